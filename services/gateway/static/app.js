/*
 * Firstline agent UI: a small single-page app over the gateway's JSON API. No build step,
 * no dependencies. Untrusted text (ticket titles, mail bodies, names) only ever reaches the
 * page as text nodes; a mail's HTML body is shown only inside a sandboxed iframe.
 */
'use strict';

(() => {
  // ------------------------------------------------------------------ constants

  const CSRF_COOKIE = 'firstline_csrf';
  const CSRF_HEADER = 'X-CSRF-Token';
  const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
  const POLL_MS = 15000;
  const SSE_RETRY_MS = 60000;
  const REFRESH_DEBOUNCE_MS = 400;
  const PAGE_SIZES = [10, 25, 50, 100];
  const MAX_ALERTS = 3;
  const STATES = [
    'new', 'open', 'pending reminder', 'pending auto close+', 'pending auto close-',
    'closed successful', 'closed unsuccessful', 'merged',
  ];
  const NEXT_STATES = STATES.filter((s) => s !== 'new' && s !== 'merged');
  const CLOSED_STATES = new Set(['closed successful', 'closed unsuccessful', 'merged', 'removed']);
  const PRIORITIES = [1, 2, 3, 4, 5];
  const CREATE_STATES = STATES.filter((s) => s !== 'merged');
  const NOTICE_KINDS = [
    'new_ticket', 'follow_up', 'unlocked_timeout', 'pending_reminder', 'escalation_warning', 'escalation_breach',
  ];
  const COUNTDOWN_MS = 30000;
  const LIST_REFRESHING_EVENTS = new Set(['TicketCreated', 'TicketMoved', 'TicketMerged', 'TicketSplit']);
  const FRAME_POLICY =
    '<meta http-equiv="Content-Security-Policy" ' +
    'content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'; font-src data:">';

  // ------------------------------------------------------------------ translations

  const MESSAGES = {
    en: {
      skipToContent: 'Skip to content', loginIntro: 'Sign in to answer the public.',
      username: 'Username', password: 'Password', signIn: 'Sign in',
      loginMissing: 'Enter your username and password.', loginFailed: 'Wrong username or password.',
      myTickets: 'My tickets', lockedTickets: 'Locked Tickets', watchedTickets: 'Watched Tickets',
      newTickets: 'New', searchTickets: 'Search tickets', searchPlaceholder: 'Search tickets (/)',
      search: 'Search', language: 'Language', logOut: 'Log out', queues: 'Queues',
      myQueues: 'My Queues', cancel: 'Cancel', dismiss: 'Dismiss', loading: 'Loading…',
      ticketNumber: 'Ticket#', age: 'Age', state: 'State', locked: 'Locked', owner: 'Owner',
      queue: 'Queue', priority: 'Priority', title: 'Title', actions: 'Actions',
      lock: 'Lock', unlock: 'Unlock', zoom: 'Zoom', close: 'Close', spam: 'Spam', move: 'Move',
      'lock.locked': 'locked', 'lock.unlocked': 'unlocked',
      allStates: 'All states', pageSize: 'Per page', previous: 'Previous', next: 'Next',
      pageInfo: '{0}–{1} of {2}', pages: 'Pages', noTickets: 'No tickets here.',
      selectAll: 'Select all tickets on this page', selectTicket: 'Select ticket {0}',
      selected: '{0} selected', bulkActions: 'Actions on selected tickets',
      bulkDone: '{0} of {1} done.', bulkFailed: '{0}: {1}', sortBy: 'Sort by {0}',
      searchResults: 'Search: “{0}”', lockedList: 'My locked tickets', watchedList: 'Watched tickets',
      newList: 'New tickets', filteredList: 'Tickets', stateFilter: 'State',
      answer: 'Answer', note: 'Note', history: 'History', merge: 'Merge', watch: 'Watch',
      unwatch: 'Stop watching', created: 'Created', pendingUntil: 'Pending until',
      lockedBy: 'Locked by {0}', notLocked: 'not locked', back: 'Back to the list',
      customer: 'Customer', articles: 'Articles', ticketActions: 'Ticket actions',
      'kind.customer': 'Customer', 'kind.agent': 'Agent', 'kind.system': 'System',
      'kind.internal': 'Internal note', 'kind.phone': 'Phone',
      to: 'To', cc: 'Cc', showHtml: 'Show formatted', showText: 'Hide formatted',
      htmlBody: 'Formatted mail (remote content blocked)', attachments: 'Attachments',
      mailTrace: 'Where did this mail go?', rawMail: 'Raw mail', reasons: 'Reasons',
      status: 'Status', mailId: 'Mail id',
      template: 'Template', noTemplate: '— no template —', text: 'Text', send: 'Send', save: 'Save',
      newState: 'New state', targetQueue: 'Queue', mergeInto: 'Merge into ticket#',
      mergeWarning: 'The articles move to the other ticket and this one becomes “merged”.',
      replaceText: 'Replace your text with the template?',
      answerTitle: 'Answer ticket {0}', noteTitle: 'Note on ticket {0}', moveTitle: 'Move ticket {0}',
      moveMany: 'Move {0} tickets', stateTitle: 'State of ticket {0}', stateMany: 'State of {0} tickets',
      priorityTitle: 'Priority of ticket {0}', priorityMany: 'Priority of {0} tickets',
      mergeTitle: 'Merge ticket {0}', answerQueued: 'Answer queued for sending.', done: 'Done.',
      answerAttachments: 'Attach files of this ticket',
      historyTitle: 'History of ticket {0}', instant: 'Instant', asOf: 'As it was at {0}',
      events: 'Events', time: 'Time', event: 'Event', actor: 'Actor', version: 'Version',
      details: 'Details', afterInstant: 'after this instant', showAt: 'Show',
      live: 'Live', polling: 'Updating every 15 s',
      lockedByColleague: 'Ticket {0} was just locked by {1}.',
      sessionExpired: 'Your session has ended. Please sign in again.',
      tooMany: 'Too many attempts. Try again in {0} s.', lockedByError: 'The ticket is locked by {0}.',
      networkError: 'The server could not be reached.', forbidden: 'You are not allowed to do this.',
      notFound: 'Not found.', error: 'Something went wrong.',
      'state.new': 'new', 'state.open': 'open', 'state.pending reminder': 'pending reminder',
      'state.pending auto close+': 'pending auto close+', 'state.pending auto close-': 'pending auto close-',
      'state.closed successful': 'closed successful', 'state.closed unsuccessful': 'closed unsuccessful',
      'state.merged': 'merged', 'state.removed': 'removed',
      'priority.1': '1 very low', 'priority.2': '2 low', 'priority.3': '3 normal',
      'priority.4': '4 high', 'priority.5': '5 very high',
      admin: 'Admin', adminOnly: 'Administrators only.', adminSections: 'Administration sections',
      'admin.agents': 'Agents', 'admin.groups': 'Groups & roles', 'admin.queues': 'Queues',
      'admin.templates': 'Templates', 'admin.filters': 'Postmaster filters', 'admin.addresses': 'System addresses',
      nothingYet: 'Nothing here yet.', name: 'Name', remove: 'Remove', saved: 'Saved.', yes: 'yes', no: 'no',
      active: 'active', disabled: 'disabled', edit: 'Edit', disable: 'Disable', enable: 'Enable',
      'delete': 'Delete', deleted: 'Deleted.', confirmDelete: 'Delete “{0}”?', none: '— none —',
      unchanged: '— unchanged —', email: 'Email', comment: 'Comment', subject: 'Subject',
      'perm.ro': 'read only: see the queue and its tickets', 'perm.move_into': 'move tickets into the queue',
      'perm.create': 'create tickets in the queue', 'perm.note': 'add notes', 'perm.owner': 'change the owner',
      'perm.priority': 'change the priority', 'perm.rw': 'full access (includes every other right)',
      newAgent: 'New agent', editAgent: 'Edit agent {0}', agentCreated: 'Agent {0} created.',
      agentDisabled: 'Agent {0} disabled; their sessions ended.', agentEnabled: 'Agent {0} enabled.',
      endSessions: 'End sessions', sessionsEnded: '{0} session(s) of {1} ended.',
      administrator: 'Administrator', auditCapability: 'May verify the audit chain', fullName: 'Full name',
      newPassword: 'New password (leave empty to keep)', queuePermissions: 'Permissions per queue',
      groupPermissions: 'Permissions per group', groupsAndRoles: 'Groups and roles', roles: 'Roles',
      groups: 'Groups', newGroup: 'New group', newRole: 'New role', editRole: 'Edit role {0}',
      groupsHelp: 'A queue belongs to one group; rights on a group apply to all its queues.',
      rolesHelp: 'A role is a named bundle of rights; an agent with the role has them all.',
      newQueue: 'New queue', editQueue: 'Edit queue {0}', queueSaved: 'Queue {0} saved.', group: 'Group',
      parentQueue: 'Parent queue', systemAddress: 'System address', displayName: 'Display name',
      salutation: 'Salutation', signature: 'Signature', followUpPolicy: 'Follow-up on a closed ticket',
      'followUp.reopen': 'reopen the ticket', 'followUp.reject': 'reject (auto reply), keep closed',
      'followUp.new_ticket': 'open a new ticket', unlockTimeout: 'Unlock after',
      unlockTimeoutMinutes: 'Unlock timeout (minutes, 0 = never)',
      firstResponseMinutes: 'Escalation: first response within (minutes, 0 = none)', minutes: '{0} min',
      openTotal: 'Open / all', notConfigured: 'not configured', queueValid: 'Queue is in use (valid)',
      subQueueHelp: 'Sub-queues: choose a parent queue (or name the queue “Parent::Child”).',
      autoResponses: 'Auto responses', autoMode: 'Send', autoDefault: 'default text', autoOn: 'this text',
      autoOff: 'never', 'auto.new_ticket': 'Reply to a new ticket',
      'auto.follow_up_closed_reject': 'Reply to a rejected follow-up',
      'auto.follow_up_closed_new': 'Reply when a follow-up opens a new ticket',
      newTemplate: 'New template', editTemplate: 'Edit template {0}', templateId: 'Id',
      templateIdHelp: 'made from the name when empty', allQueues: 'all queues',
      templatesHelp: 'Standard responses offered when answering. The queue adds its salutation and signature.',
      templateQueuesHelp: 'None chosen: offered in every queue.',
      filtersHelp: 'Tried in position order on every incoming mail; all conditions of a filter must match.',
      newFilter: 'New filter', editFilter: 'Edit filter {0}', position: 'Position', conditions: 'Conditions',
      conditionsHelp: 'A condition is a header (or “body”) and a regular expression, matched case-insensitively.',
      header: 'Header', pattern: 'Regular expression', addCondition: 'Add condition',
      needCondition: 'A filter needs at least one condition.', filterActions: 'Then', filterEnabled: 'Enabled',
      setQueue: 'Set queue', setPriority: 'Set priority', setTitle: 'Set title',
      'filter.mark_spam': 'Mark as spam', 'filter.ignore': 'Ignore the mail', 'filter.stop': 'Stop after this filter',
      newAddress: 'New system address', editAddress: 'Edit {0}', languageQueues: 'Queue by language',
      languageQueuesHelp: 'Mail in one of these languages goes to the given queue instead.',
      languageCode: 'Language (e.g. de)', addLanguageQueue: 'Add language',
      addressesHelp: 'Mail to a system address goes to its queue; answers are sent from the queue’s address.',
      newTicket: 'New ticket', newPhoneTicket: 'New phone ticket', newEmailTicket: 'New email ticket',
      customerEmail: 'Customer email', customerName: 'Customer name', lockToMe: 'Lock to me',
      createTicket: 'Create ticket', ticketCreated: 'Ticket {0} created.', initialState: 'State after creation',
      noCreateQueues: 'You may not create tickets in any queue.', phoneBody: 'What was said on the phone',
      emailBody: 'Text to the customer (the queue adds salutation and signature)',
      escalationIn: 'Escalation in', escalationDue: 'Escalation due', overdue: 'overdue',
      'escalation.first_response': 'first response', 'escalation.update': 'update',
      'escalation.solution': 'solution', changeOwner: 'Owner', ownerTitle: 'Owner of ticket {0}',
      newOwner: 'New owner (username; empty: nobody)', phoneCall: 'Phone call',
      phoneTitle: 'Phone call on ticket {0}', direction: 'Direction', 'direction.inbound': 'the customer called',
      'direction.outbound': 'I called the customer', split: 'Split', splitArticle: 'Split article {0} into a new ticket',
      confirmSplit: 'Split this article off into a new ticket?', splitDone: 'Split off into ticket {0}.',
      preview: 'Preview', previewTitle: 'As the customer will receive it', previewNeedsText: 'Write a text first.',
      templateProblem: 'Template problem ({0}): {1}',
      preferences: 'Preferences', preferencesTitle: 'My preferences', notifications: 'Send me an email about',
      'notice.new_ticket': 'new tickets in My Queues', 'notice.follow_up': 'follow-ups on my tickets',
      'notice.unlocked_timeout': 'my tickets unlocked after the timeout',
      'notice.pending_reminder': 'pending reminders that are due', 'notice.escalation_warning': 'escalations coming soon',
      'notice.escalation_breach': 'escalations that happened',
      myQueuesHelp: 'The queues “My Queues” shows; none chosen: every queue you may read.',
      preferencesSaved: 'Preferences saved.', preferencesUnavailable: 'Preferences cannot be loaded: {0}',
      'lang.en': 'English', 'lang.de': 'Deutsch',
    },
    de: {
      skipToContent: 'Zum Inhalt springen', loginIntro: 'Anmelden, um Anfragen zu beantworten.',
      username: 'Benutzername', password: 'Passwort', signIn: 'Anmelden',
      loginMissing: 'Bitte Benutzername und Passwort eingeben.',
      loginFailed: 'Benutzername oder Passwort falsch.',
      myTickets: 'Meine Tickets', lockedTickets: 'Gesperrte Tickets', watchedTickets: 'Beobachtete Tickets',
      newTickets: 'Neu', searchTickets: 'Tickets suchen', searchPlaceholder: 'Tickets suchen (/)',
      search: 'Suchen', language: 'Sprache', logOut: 'Abmelden', queues: 'Queues',
      myQueues: 'Meine Queues', cancel: 'Abbrechen', dismiss: 'Schließen', loading: 'Lädt…',
      ticketNumber: 'Ticket#', age: 'Alter', state: 'Status', locked: 'Sperre', owner: 'Besitzer',
      queue: 'Queue', priority: 'Priorität', title: 'Titel', actions: 'Aktionen',
      lock: 'Sperren', unlock: 'Freigeben', zoom: 'Öffnen', close: 'Schließen', spam: 'Spam',
      move: 'Verschieben', 'lock.locked': 'gesperrt', 'lock.unlocked': 'frei',
      allStates: 'Alle Status', pageSize: 'Pro Seite', previous: 'Zurück', next: 'Weiter',
      pageInfo: '{0}–{1} von {2}', pages: 'Seiten', noTickets: 'Keine Tickets.',
      selectAll: 'Alle Tickets dieser Seite auswählen', selectTicket: 'Ticket {0} auswählen',
      selected: '{0} ausgewählt', bulkActions: 'Aktionen für ausgewählte Tickets',
      bulkDone: '{0} von {1} erledigt.', bulkFailed: '{0}: {1}', sortBy: 'Nach {0} sortieren',
      searchResults: 'Suche: „{0}“', lockedList: 'Meine gesperrten Tickets',
      watchedList: 'Beobachtete Tickets', newList: 'Neue Tickets', filteredList: 'Tickets',
      stateFilter: 'Status',
      answer: 'Antworten', note: 'Notiz', history: 'Historie', merge: 'Zusammenfassen',
      watch: 'Beobachten', unwatch: 'Nicht mehr beobachten', created: 'Erstellt',
      pendingUntil: 'Warten bis', lockedBy: 'Gesperrt von {0}', notLocked: 'nicht gesperrt',
      back: 'Zurück zur Liste', customer: 'Kunde', articles: 'Artikel', ticketActions: 'Ticket-Aktionen',
      'kind.customer': 'Kunde', 'kind.agent': 'Agent', 'kind.system': 'System',
      'kind.internal': 'Interne Notiz', 'kind.phone': 'Telefon',
      to: 'An', cc: 'Cc', showHtml: 'Formatiert anzeigen', showText: 'Formatierung ausblenden',
      htmlBody: 'Formatierte Mail (externe Inhalte blockiert)', attachments: 'Anhänge',
      mailTrace: 'Wohin ging diese Mail?', rawMail: 'Originalmail', reasons: 'Gründe',
      status: 'Status', mailId: 'Mail-ID',
      template: 'Vorlage', noTemplate: '— keine Vorlage —', text: 'Text', send: 'Senden',
      save: 'Speichern', newState: 'Neuer Status', targetQueue: 'Queue',
      mergeInto: 'Zusammenfassen mit Ticket#',
      mergeWarning: 'Die Artikel wandern in das andere Ticket, dieses wird „zusammengefasst“.',
      replaceText: 'Ihren Text durch die Vorlage ersetzen?',
      answerTitle: 'Ticket {0} beantworten', noteTitle: 'Notiz zu Ticket {0}',
      moveTitle: 'Ticket {0} verschieben', moveMany: '{0} Tickets verschieben',
      stateTitle: 'Status von Ticket {0}', stateMany: 'Status von {0} Tickets',
      priorityTitle: 'Priorität von Ticket {0}', priorityMany: 'Priorität von {0} Tickets',
      mergeTitle: 'Ticket {0} zusammenfassen', answerQueued: 'Antwort wird versendet.', done: 'Erledigt.',
      answerAttachments: 'Dateien dieses Tickets anhängen',
      historyTitle: 'Historie von Ticket {0}', instant: 'Zeitpunkt', asOf: 'Stand {0}',
      events: 'Ereignisse', time: 'Zeit', event: 'Ereignis', actor: 'Von', version: 'Version',
      details: 'Details', afterInstant: 'nach diesem Zeitpunkt', showAt: 'Anzeigen',
      live: 'Live', polling: 'Aktualisierung alle 15 s',
      lockedByColleague: 'Ticket {0} wurde gerade von {1} gesperrt.',
      sessionExpired: 'Ihre Sitzung ist abgelaufen. Bitte neu anmelden.',
      tooMany: 'Zu viele Versuche. Bitte in {0} s erneut versuchen.',
      lockedByError: 'Das Ticket ist von {0} gesperrt.',
      networkError: 'Der Server ist nicht erreichbar.', forbidden: 'Dafür fehlt Ihnen die Berechtigung.',
      notFound: 'Nicht gefunden.', error: 'Etwas ist schiefgelaufen.',
      'state.new': 'neu', 'state.open': 'offen', 'state.pending reminder': 'warten zur Erinnerung',
      'state.pending auto close+': 'warten auf erfolgreich schließen',
      'state.pending auto close-': 'warten auf erfolglos schließen',
      'state.closed successful': 'erfolgreich geschlossen',
      'state.closed unsuccessful': 'erfolglos geschlossen',
      'state.merged': 'zusammengefasst', 'state.removed': 'entfernt',
      'priority.1': '1 sehr niedrig', 'priority.2': '2 niedrig', 'priority.3': '3 normal',
      'priority.4': '4 hoch', 'priority.5': '5 sehr hoch',
      admin: 'Admin', adminOnly: 'Nur für Administratoren.', adminSections: 'Bereiche der Administration',
      'admin.agents': 'Agenten', 'admin.groups': 'Gruppen & Rollen', 'admin.queues': 'Queues',
      'admin.templates': 'Vorlagen', 'admin.filters': 'Postmaster-Filter', 'admin.addresses': 'Systemadressen',
      nothingYet: 'Noch nichts vorhanden.', name: 'Name', remove: 'Entfernen', saved: 'Gespeichert.', yes: 'ja',
      no: 'nein', active: 'aktiv', disabled: 'deaktiviert', edit: 'Bearbeiten', disable: 'Deaktivieren',
      enable: 'Aktivieren', 'delete': 'Löschen', deleted: 'Gelöscht.', confirmDelete: '„{0}“ löschen?',
      none: '— keine —', unchanged: '— unverändert —', email: 'E-Mail', comment: 'Kommentar',
      subject: 'Betreff',
      'perm.ro': 'nur lesen: Queue und Tickets sehen', 'perm.move_into': 'Tickets in die Queue verschieben',
      'perm.create': 'Tickets in der Queue anlegen', 'perm.note': 'Notizen hinzufügen',
      'perm.owner': 'Besitzer ändern', 'perm.priority': 'Priorität ändern',
      'perm.rw': 'Vollzugriff (enthält alle anderen Rechte)',
      newAgent: 'Neuer Agent', editAgent: 'Agent {0} bearbeiten', agentCreated: 'Agent {0} angelegt.',
      agentDisabled: 'Agent {0} deaktiviert; Sitzungen beendet.', agentEnabled: 'Agent {0} aktiviert.',
      endSessions: 'Sitzungen beenden', sessionsEnded: '{0} Sitzung(en) von {1} beendet.',
      administrator: 'Administrator', auditCapability: 'Darf die Audit-Kette prüfen', fullName: 'Voller Name',
      newPassword: 'Neues Passwort (leer lassen zum Beibehalten)', queuePermissions: 'Rechte pro Queue',
      groupPermissions: 'Rechte pro Gruppe', groupsAndRoles: 'Gruppen und Rollen', roles: 'Rollen',
      groups: 'Gruppen', newGroup: 'Neue Gruppe', newRole: 'Neue Rolle', editRole: 'Rolle {0} bearbeiten',
      groupsHelp: 'Jede Queue gehört zu einer Gruppe; Rechte auf eine Gruppe gelten für alle ihre Queues.',
      rolesHelp: 'Eine Rolle bündelt Rechte; ein Agent mit der Rolle hat sie alle.',
      newQueue: 'Neue Queue', editQueue: 'Queue {0} bearbeiten', queueSaved: 'Queue {0} gespeichert.',
      group: 'Gruppe', parentQueue: 'Übergeordnete Queue', systemAddress: 'Systemadresse',
      displayName: 'Anzeigename', salutation: 'Anrede', signature: 'Signatur',
      followUpPolicy: 'Nachfrage auf ein geschlossenes Ticket', 'followUp.reopen': 'Ticket wieder öffnen',
      'followUp.reject': 'ablehnen (automatische Antwort), geschlossen lassen',
      'followUp.new_ticket': 'neues Ticket anlegen', unlockTimeout: 'Freigabe nach',
      unlockTimeoutMinutes: 'Automatische Freigabe (Minuten, 0 = nie)',
      firstResponseMinutes: 'Eskalation: erste Antwort innerhalb (Minuten, 0 = keine)', minutes: '{0} Min.',
      openTotal: 'Offen / alle', notConfigured: 'nicht eingerichtet', queueValid: 'Queue ist in Gebrauch (gültig)',
      subQueueHelp: 'Unter-Queues: übergeordnete Queue wählen (oder die Queue „Eltern::Kind“ nennen).',
      autoResponses: 'Automatische Antworten', autoMode: 'Senden', autoDefault: 'Standardtext',
      autoOn: 'diesen Text', autoOff: 'nie', 'auto.new_ticket': 'Antwort auf ein neues Ticket',
      'auto.follow_up_closed_reject': 'Antwort auf eine abgelehnte Nachfrage',
      'auto.follow_up_closed_new': 'Antwort, wenn eine Nachfrage ein neues Ticket anlegt',
      newTemplate: 'Neue Vorlage', editTemplate: 'Vorlage {0} bearbeiten', templateId: 'ID',
      templateIdHelp: 'aus dem Namen, wenn leer', allQueues: 'alle Queues',
      templatesHelp: 'Standardantworten beim Antworten. Die Queue ergänzt Anrede und Signatur.',
      templateQueuesHelp: 'Keine gewählt: in jeder Queue angeboten.',
      filtersHelp: 'Werden für jede eingehende Mail nach Position geprüft; alle Bedingungen müssen zutreffen.',
      newFilter: 'Neuer Filter', editFilter: 'Filter {0} bearbeiten', position: 'Position',
      conditions: 'Bedingungen',
      conditionsHelp: 'Eine Bedingung ist ein Header (oder „body“) und ein regulärer Ausdruck, ohne Groß-/Kleinschreibung.',
      header: 'Header', pattern: 'Regulärer Ausdruck', addCondition: 'Bedingung hinzufügen',
      needCondition: 'Ein Filter braucht mindestens eine Bedingung.', filterActions: 'Dann',
      filterEnabled: 'Aktiv', setQueue: 'Queue setzen', setPriority: 'Priorität setzen', setTitle: 'Titel setzen',
      'filter.mark_spam': 'Als Spam markieren', 'filter.ignore': 'Mail ignorieren',
      'filter.stop': 'Nach diesem Filter aufhören',
      newAddress: 'Neue Systemadresse', editAddress: '{0} bearbeiten', languageQueues: 'Queue nach Sprache',
      languageQueuesHelp: 'Mails in einer dieser Sprachen gehen stattdessen in die angegebene Queue.',
      languageCode: 'Sprache (z. B. de)', addLanguageQueue: 'Sprache hinzufügen',
      addressesHelp: 'Mails an eine Systemadresse landen in ihrer Queue; Antworten gehen von der Adresse der Queue aus.',
      newTicket: 'Neues Ticket', newPhoneTicket: 'Neues Telefon-Ticket', newEmailTicket: 'Neues E-Mail-Ticket',
      customerEmail: 'E-Mail des Kunden', customerName: 'Name des Kunden', lockToMe: 'Für mich sperren',
      createTicket: 'Ticket anlegen', ticketCreated: 'Ticket {0} angelegt.', initialState: 'Status nach dem Anlegen',
      noCreateQueues: 'Sie dürfen in keiner Queue Tickets anlegen.', phoneBody: 'Was am Telefon gesagt wurde',
      emailBody: 'Text an den Kunden (die Queue ergänzt Anrede und Signatur)',
      escalationIn: 'Eskalation in', escalationDue: 'Eskalation fällig', overdue: 'überfällig',
      'escalation.first_response': 'erste Reaktion', 'escalation.update': 'Aktualisierung',
      'escalation.solution': 'Lösung', changeOwner: 'Besitzer', ownerTitle: 'Besitzer von Ticket {0}',
      newOwner: 'Neuer Besitzer (Benutzername; leer: niemand)', phoneCall: 'Telefonat',
      phoneTitle: 'Telefonat zu Ticket {0}', direction: 'Richtung', 'direction.inbound': 'der Kunde hat angerufen',
      'direction.outbound': 'ich habe den Kunden angerufen', split: 'Abtrennen',
      splitArticle: 'Artikel {0} in ein neues Ticket abtrennen',
      confirmSplit: 'Diesen Artikel in ein neues Ticket abtrennen?', splitDone: 'In Ticket {0} abgetrennt.',
      preview: 'Vorschau', previewTitle: 'So erhält es der Kunde', previewNeedsText: 'Bitte zuerst einen Text schreiben.',
      templateProblem: 'Problem in der Vorlage ({0}): {1}',
      preferences: 'Einstellungen', preferencesTitle: 'Meine Einstellungen', notifications: 'Mir eine E-Mail senden bei',
      'notice.new_ticket': 'neuen Tickets in Meinen Queues', 'notice.follow_up': 'Nachfragen zu meinen Tickets',
      'notice.unlocked_timeout': 'Freigabe meiner Tickets nach Zeitablauf',
      'notice.pending_reminder': 'fälligen Erinnerungen', 'notice.escalation_warning': 'bevorstehenden Eskalationen',
      'notice.escalation_breach': 'eingetretenen Eskalationen',
      myQueuesHelp: 'Die Queues unter „Meine Queues“; keine gewählt: alle Queues, die Sie lesen dürfen.',
      preferencesSaved: 'Einstellungen gespeichert.', preferencesUnavailable: 'Einstellungen nicht ladbar: {0}',
      'lang.en': 'English', 'lang.de': 'Deutsch',
    },
  };

  let lang = pickLanguage();

  function pickLanguage() {
    const stored = localStorage.getItem('firstline.lang');
    if (stored && MESSAGES[stored]) return stored;
    return (navigator.language || 'en').toLowerCase().startsWith('de') ? 'de' : 'en';
  }

  function t(key, ...args) {
    const text = MESSAGES[lang][key] ?? MESSAGES.en[key] ?? key;
    return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ''));
  }

  function applyStaticTranslations() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-placeholder]')) {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    }
    for (const el of document.querySelectorAll('[data-i18n-aria-label]')) {
      el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
    }
    $('#language-select').value = lang;
  }

  const stateLabel = (s) => (s ? t(`state.${s}`) : '');
  const priorityLabel = (p) => (p ? t(`priority.${p}`) : '');

  // ------------------------------------------------------------------ app state

  const app = {
    me: null,
    route: null,
    queues: [],
    moveTargets: null,
    list: null,
    lastListHash: '#/queues',
    selected: new Set(),
    zoom: null,
    history: null,
    admin: null,
    prefs: null,
    createQueues: null,
    seq: { list: 0, zoom: 0, history: 0, admin: 0, create: 0, prefs: 0 },
    focusOnRender: false,
    dialogSubmit: null,
    live: { source: null, poll: null, retry: null, timers: new Map() },
  };

  // ------------------------------------------------------------------ DOM helpers

  const $ = (selector, root = document) => root.querySelector(selector);
  const enc = encodeURIComponent;
  let uidCounter = 0;
  const uid = (prefix = 'f') => `${prefix}-${++uidCounter}`;

  /** Create an element. Strings among the children become text nodes, never markup. */
  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  /** Replace an element's children, with the same rules as h() (null/false are skipped). */
  function fill(el, ...children) {
    el.replaceChildren();
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function button(label, onclick, props = {}) {
    return h('button', { type: 'button', onclick, ...props }, label);
  }

  function field(label, control) {
    if (!control.id) control.id = uid();
    return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
  }

  function select(name, options, selected, props = {}) {
    return h('select', { name, ...props },
      options.map(([value, label]) =>
        h('option', { value, selected: String(value) === String(selected) }, label)));
  }

  /** Re-render without losing the keyboard focus (live updates must not steal it). */
  function keepFocus(render) {
    const key = document.activeElement?.dataset?.focusKey;
    render();
    if (key) document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`)?.focus();
  }

  function focusHeading(view) {
    if (!app.focusOnRender) return;
    app.focusOnRender = false;
    $('h1', view)?.focus();
  }

  function showView(name) {
    for (const view of ['list', 'zoom', 'history', 'admin', 'new', 'prefs']) $(`#${view}-view`).hidden = view !== name;
  }

  function setTitle(text) {
    document.title = text ? `${text} – Firstline` : 'Firstline';
  }

  // ------------------------------------------------------------------ formatting

  const ticketNo = (item) => String(item.number ?? item.ticket_number ?? '');
  const ticketHref = (number) => `#/ticket/${enc(number)}`;
  const historyHref = (number) => `#/ticket/${enc(number)}/history`;
  const queueHref = (name) => (name ? `#/queues/${enc(name)}` : '#/queues');

  function fmtTime(iso) {
    if (!iso) return '';
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return new Intl.DateTimeFormat(lang, { dateStyle: 'short', timeStyle: 'medium' }).format(date);
  }

  function ageSeconds(item) {
    if (typeof item.age_seconds === 'number') return item.age_seconds;
    const created = Date.parse(item.created_at ?? item.created ?? '');
    return Number.isNaN(created) ? null : Math.max(0, (Date.now() - created) / 1000);
  }

  function fmtDuration(seconds) {
    if (seconds === null) return '';
    const minutes = Math.floor(seconds / 60);
    const hours = Math.floor(minutes / 60);
    const days = Math.floor(hours / 24);
    if (days) return `${days} d ${hours % 24} h`;
    if (hours) return `${hours} h ${minutes % 60} m`;
    return `${minutes} m`;
  }

  /** Time left until an ISO instant, compact: "2h 15m", "3d 4h", "-45m" (negative: overdue). */
  function fmtCountdown(seconds) {
    const sign = seconds < 0 ? '-' : '';
    const minutes = Math.floor(Math.abs(seconds) / 60);
    const hours = Math.floor(minutes / 60);
    const days = Math.floor(hours / 24);
    if (days) return `${sign}${days}d ${hours % 24}h`;
    if (hours) return `${sign}${hours}h ${minutes % 60}m`;
    return `${sign}${minutes}m`;
  }

  const escalationKind = (kind) => (kind ? t(`escalation.${kind}`) : '');

  /** The escalation countdown of a ticket (list cell, zoom field); it ticks without a reload. */
  function escalationBadge(item) {
    if (!item.escalation_due_at) return '';
    const badge = h('span', { class: 'escalation', dataset: { due: item.escalation_due_at } });
    updateCountdown(badge);
    const kind = escalationKind(item.escalation_kind);
    badge.title = `${kind ? `${kind}: ` : ''}${fmtTime(item.escalation_due_at)}`;
    return badge;
  }

  function updateCountdown(badge) {
    const seconds = (Date.parse(badge.dataset.due) - Date.now()) / 1000;
    if (Number.isNaN(seconds)) return;
    const overdue = seconds < 0;
    badge.textContent = fmtCountdown(seconds);
    badge.classList.toggle('is-overdue', overdue);
    badge.classList.toggle('is-soon', !overdue && seconds < 3600);
    badge.setAttribute('aria-label', overdue ? `${t('overdue')} ${badge.textContent}` : badge.textContent);
    badge.closest('tr.ticket-row')?.classList.toggle('is-escalated', overdue);
  }

  function tickCountdowns() {
    for (const badge of document.querySelectorAll('.escalation[data-due]')) updateCountdown(badge);
  }

  function fmtSize(bytes) {
    if (typeof bytes !== 'number') return '';
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  /** A value for <input type=datetime-local>; seconds only where the input's step allows them. */
  function toLocalInput(date, withSeconds = false) {
    const pad = (n) => String(n).padStart(2, '0');
    const minutes = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
      `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
    return withSeconds ? `${minutes}:${pad(date.getSeconds())}` : minutes;
  }

  function priorityChip(priority) {
    return h('span', { class: `prio prio-${Number(priority) || 3}` }, priorityLabel(priority));
  }

  function lockText(item) {
    return item.locked ? t('lock.locked') : t('lock.unlocked');
  }

  // ------------------------------------------------------------------ API client

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function readCookie(name) {
    for (const part of document.cookie.split(';')) {
      const [key, ...rest] = part.trim().split('=');
      if (key === name) return decodeURIComponent(rest.join('='));
    }
    return '';
  }

  function withQuery(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== '') query.set(key, String(value));
    }
    const text = query.toString();
    return text ? `${path}?${text}` : path;
  }

  async function api(path, { method = 'GET', body, params } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (!SAFE_METHODS.has(method)) {
      const token = readCookie(CSRF_COOKIE);
      if (token) headers[CSRF_HEADER] = token;
    }
    let response;
    try {
      response = await fetch(withQuery(path, params), {
        method,
        headers,
        credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, t('networkError'), null);
    }
    const data = await readBody(response);
    if (response.ok) return data;
    if (response.status === 401 && path !== '/api/login') onSessionLost();
    throw new ApiError(response.status, errorMessage(response, data), data);
  }

  async function readBody(response) {
    if (response.status === 204) return null;
    const type = response.headers.get('Content-Type') || '';
    try {
      return type.includes('json') ? await response.json() : await response.text();
    } catch {
      return null;
    }
  }

  /** The most useful sentence in an error response, whatever shape the body has. */
  function errorMessage(response, data) {
    if (response.status === 429) return t('tooMany', response.headers.get('Retry-After') || '60');
    const info = data && typeof data.detail === 'object' && !Array.isArray(data.detail) ? data.detail : data;
    const holder = info && (info.locked_by || info.lock_owner || info.holder);
    if (response.status === 409 && holder) return t('lockedByError', holder);
    const text = describeBody(info);
    if (text) return text;
    const fallback = { 401: 'sessionExpired', 403: 'forbidden', 404: 'notFound' }[response.status];
    return fallback ? t(fallback) : `${response.status} ${response.statusText}`;
  }

  function describeBody(data) {
    if (!data) return '';
    if (typeof data === 'string') return data.slice(0, 300);
    for (const key of ['message', 'detail', 'error']) {
      const value = data[key];
      if (typeof value === 'string' && value) return data.field ? `${data.field}: ${value}` : value;
      if (Array.isArray(value) && value.length) return value.map(describeItem).join('; ');
    }
    return '';
  }

  function describeItem(item) {
    if (typeof item === 'string') return item;
    const where = Array.isArray(item.loc) ? item.loc.filter((p) => p !== 'body').join('.') : item.field;
    const what = item.msg || item.message || '';
    return where ? `${where}: ${what}` : what;
  }

  const ticketPath = (number, action = '') => `/api/tickets/${enc(number)}${action ? `/${action}` : ''}`;
  const postAction = (number, action, body = {}) => api(ticketPath(number, action), { method: 'POST', body });

  // ------------------------------------------------------------------ alerts

  function notify(message, kind = 'error') {
    const box = h('div', { class: `alert alert--${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('span', { class: 'alert-text' }, message),
      button('×', () => box.remove(), { class: 'alert-close', 'aria-label': t('dismiss') }));
    const alerts = $('#alerts');
    alerts.append(box);
    while (alerts.children.length > MAX_ALERTS) alerts.firstElementChild.remove();
    if (kind !== 'error') setTimeout(() => box.remove(), 4000);
  }

  // ------------------------------------------------------------------ routing

  function parseRoute() {
    const raw = location.hash.replace(/^#/, '') || '/queues';
    const cut = raw.indexOf('?');
    const path = cut < 0 ? raw : raw.slice(0, cut);
    const params = new URLSearchParams(cut < 0 ? '' : raw.slice(cut + 1));
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'ticket' && parts[1]) {
      return { view: parts[2] === 'history' ? 'history' : 'zoom', number: parts[1], params };
    }
    if (parts[0] === 'admin') return { view: 'admin', tab: parts[1] || 'agents', params };
    if (parts[0] === 'new') return { view: 'new', kind: parts[1] === 'email' ? 'email' : 'phone', params };
    if (parts[0] === 'preferences') return { view: 'prefs', params };
    if (parts[0] === 'search') return { view: 'list', kind: 'search', params };
    if (parts[0] === 'tickets') return { view: 'list', kind: 'filter', params };
    return { view: 'list', kind: 'queue', queue: parts[1] || '', params };
  }

  function routeHash(route, changes = {}) {
    const params = new URLSearchParams(route.params);
    for (const [key, value] of Object.entries(changes)) {
      if (value === '' || value === null || value === undefined) params.delete(key);
      else params.set(key, String(value));
    }
    const base = route.kind === 'search' ? '#/search'
      : route.kind === 'filter' ? '#/tickets' : queueHref(route.queue);
    const query = params.toString();
    return query ? `${base}?${query}` : base;
  }

  function onHashChange() {
    app.route = parseRoute();
    app.focusOnRender = true;
    renderRoute();
  }

  function renderRoute() {
    const route = app.route;
    renderQueueTree();
    const queue = route.view === 'list' && route.kind === 'queue' ? route.queue : '';
    for (const link of document.querySelectorAll('.create-links a')) {
      const kind = link.getAttribute('href').includes('email') ? 'email' : 'phone';
      link.setAttribute('href', queue ? `#/new/${kind}?queue=${enc(queue)}` : `#/new/${kind}`);
    }
    if (route.view === 'list') {
      app.lastListHash = location.hash || '#/queues';
      showView('list');
      loadList();
    } else if (route.view === 'zoom') {
      showView('zoom');
      loadZoom();
    } else if (route.view === 'admin') {
      showView('admin');
      loadAdmin();
    } else if (route.view === 'new') {
      showView('new');
      loadNewTicket();
    } else if (route.view === 'prefs') {
      showView('prefs');
      loadPreferences();
    } else {
      showView('history');
      loadHistory(route.params.get('at'));
    }
  }

  // ------------------------------------------------------------------ session

  async function boot() {
    applyStaticTranslations();
    bindStaticHandlers();
    try {
      app.me = await api('/api/me');
    } catch (error) {
      showLogin();
      if (error.status !== 401) $('#login-error').textContent = error.message;
      return;
    }
    startApp();
  }

  function showLogin() {
    stopLive();
    $('#app-view').hidden = true;
    $('#login-view').hidden = false;
    setTitle('');
    $('#login-username').focus();
  }

  function startApp() {
    $('#login-view').hidden = true;
    $('#app-view').hidden = false;
    $('#whoami').textContent = app.me.username || '';
    $('#admin-link').hidden = !app.me.is_admin;
    $('.create-links').hidden = !Object.values(app.me.permissions || {})
      .some((kinds) => kinds.includes('create') || kinds.includes('rw'));
    updateCounters(app.me.counters);
    app.route = parseRoute();
    app.focusOnRender = true;
    renderRoute();
    loadQueues();
    startLive();
    loadMyPreferences();
  }

  /** The saved preferences: the UI speaks the saved language, "My Queues" shows the saved queues. */
  async function loadMyPreferences() {
    try {
      app.prefs = await api('/api/me/preferences');
    } catch (error) {
      if (error.status !== 401 && error.status !== 404) notify(t('preferencesUnavailable', error.message));
      return;
    }
    if (app.prefs.language && MESSAGES[app.prefs.language] && app.prefs.language !== lang) {
      setLanguage(app.prefs.language);
    } else {
      renderQueueTree();
      if (app.route?.view === 'list' && app.route.kind === 'queue' && !app.route.queue) loadList();
    }
  }

  const myQueues = () => (app.prefs?.my_queues || []).filter((name) => app.queues.some((q) => q.name === name));

  function onSessionLost() {
    if (!app.me) return;
    app.me = null;
    app.moveTargets = null;
    app.createQueues = null;
    app.prefs = null;
    app.admin = null;
    showLogin();
    $('#login-error').textContent = t('sessionExpired');
  }

  async function onLogin(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const error = $('#login-error');
    const submit = $('button[type=submit]', form);
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    error.textContent = '';
    if (!username || !password) {
      error.textContent = t('loginMissing');
      return;
    }
    submit.disabled = true;
    try {
      await api('/api/login', { method: 'POST', body: { username, password } });
      form.elements.password.value = '';
      app.me = await api('/api/me');
      startApp();
    } catch (failure) {
      error.textContent = failure.status === 401 ? t('loginFailed') : failure.message;
    } finally {
      submit.disabled = false;
    }
  }

  async function onLogout() {
    try {
      await api('/api/logout', { method: 'POST' });
    } catch (error) {
      if (error.status !== 401) notify(error.message);
    }
    app.me = null;
    app.moveTargets = null;
    app.createQueues = null;
    app.prefs = null;
    app.admin = null;
    showLogin();
  }

  async function loadCounters() {
    try {
      const me = await api('/api/me');
      app.me = me;
      updateCounters(me.counters);
    } catch (error) {
      if (error.status !== 401) notify(error.message);
    }
  }

  function updateCounters(counters = {}) {
    for (const badge of document.querySelectorAll('[data-counter]')) {
      badge.textContent = String(counters?.[badge.dataset.counter] ?? 0);
    }
  }

  // ------------------------------------------------------------------ queue tree

  function openCount(queue) {
    if (typeof queue.open === 'number') return queue.open;
    return Object.entries(queue.counts || {})
      .reduce((sum, [state, n]) => (CLOSED_STATES.has(state) ? sum : sum + Number(n || 0)), 0);
  }

  const queueLabel = (name) => name.split('::').pop();

  function parentName(queue) {
    if (queue.parent) return queue.parent;
    const cut = queue.name.lastIndexOf('::');
    return cut > 0 ? queue.name.slice(0, cut) : null;
  }

  /** OTRS writes sub-queues as "Parent::Child"; an explicit `parent` field wins. */
  function queueTree(queues) {
    const sorted = [...queues].sort((a, b) => a.name.localeCompare(b.name));
    const nodes = new Map(sorted.map((q) => [q.name, { queue: q, children: [] }]));
    const roots = [];
    for (const q of sorted) {
      const parent = nodes.get(parentName(q));
      (parent ? parent.children : roots).push(nodes.get(q.name));
    }
    return roots;
  }

  async function loadQueues() {
    try {
      const data = await api('/api/queues');
      app.queues = data.items || [];
      renderQueueTree();
      if (app.route?.view === 'list' && app.list) renderListToolbar();
    } catch (error) {
      if (error.status !== 401) notify(error.message);
    }
  }

  function renderQueueTree() {
    const route = app.route;
    const current = route?.view === 'list' && route.kind === 'queue' ? route.queue : null;
    const mine = new Set(myQueues());
    const total = app.queues.filter((q) => !mine.size || mine.has(q.name)).reduce((sum, q) => sum + openCount(q), 0);
    const link = (label, count, href, isCurrent, key) =>
      h('a', { href, 'aria-current': isCurrent ? 'page' : null, dataset: { focusKey: `queue:${key}` } },
        h('span', { class: 'queue-name' }, label), ' ', h('span', { class: 'queue-count' }, `(${count})`));
    const renderNode = (node) => h('li', {},
      link(queueLabel(node.queue.name), openCount(node.queue), queueHref(node.queue.name),
        current === node.queue.name, node.queue.name),
      node.children.length ? h('ul', {}, node.children.map(renderNode)) : null);
    keepFocus(() => $('#queue-tree').replaceChildren(
      h('li', { class: 'my-queues' }, link(t('myQueues'), total, '#/queues', current === '', '')),
      ...queueTree(app.queues).map(renderNode)));
  }

  // ------------------------------------------------------------------ ticket list

  /** The ticket list's columns; `sort` is the tickets service's sort key (none: not sortable). */
  const COLUMNS = [
    { key: 'number', sort: 'number', label: 'ticketNumber', cell: (item) => h('a', { href: ticketHref(ticketNo(item)),
      dataset: { focusKey: `${ticketNo(item)}:link` } }, ticketNo(item)) },
    { key: 'created', sort: 'created_at', label: 'age', cell: (item) => fmtDuration(ageSeconds(item)) },
    { key: 'state', sort: 'state', label: 'state', cell: (item) => stateLabel(item.state) },
    { key: 'locked', label: 'locked', cell: lockText, optional: true },
    { key: 'owner', sort: 'owner', label: 'owner', cell: (item) => item.owner || '', optional: true },
    { key: 'queue', sort: 'queue', label: 'queue', cell: (item) => item.queue || '', optional: true },
    { key: 'priority', sort: 'priority', label: 'priority', cell: (item) => priorityChip(item.priority) },
    { key: 'escalation', sort: 'escalation', label: 'escalationIn', cell: escalationBadge },
    { key: 'title', sort: 'title', label: 'title', cell: titleCell },
  ];

  function titleCell(item) {
    return [
      h('a', { href: ticketHref(ticketNo(item)), class: 'title-link' }, item.title || '—'),
      item.snippet ? h('div', { class: 'snippet muted' }, snippetParts(item.snippet)) : null,
    ];
  }

  /** A search snippet marks its hits with <b>…</b>; only those two tags become markup (a <mark>). */
  function snippetParts(snippet) {
    const parts = [];
    let hit = false;
    for (const piece of String(snippet).split(/(<b>|<\/b>)/)) {
      if (piece === '<b>' || piece === '</b>') hit = piece === '<b>';
      else if (piece) parts.push(hit ? h('mark', {}, piece) : piece);
    }
    return parts;
  }

  /** The sort key for tickets (oldest first by default); an unknown one falls back to the default. */
  function listSort(params) {
    const wanted = params.get('sort');
    return COLUMNS.some((col) => col.sort && col.sort === wanted) ? wanted : 'created_at';
  }

  function pageSize() {
    return Number(app.route.params.get('page_size') || localStorage.getItem('firstline.pageSize') || 25);
  }

  function listRequest(route) {
    const p = route.params;
    const paging = { page: p.get('page') || 1, page_size: pageSize() };
    if (route.kind === 'search') return { path: '/api/search', params: { q: p.get('q'), ...paging } };
    const params = {
      ...paging,
      state: p.get('state'),
      sort: listSort(p),
      order: p.get('order') || 'asc',
    };
    if (route.kind === 'queue') params.queue = route.queue || myQueues().join(',');
    else for (const key of ['owner', 'locked', 'watched', 'queue']) params[key] = p.get(key);
    return { path: '/api/tickets', params };
  }

  function listTitle(route) {
    const p = route.params;
    if (route.kind === 'search') return t('searchResults', p.get('q') || '');
    if (route.kind === 'queue') return route.queue || t('myQueues');
    if (p.get('locked')) return t('lockedList');
    if (p.get('watched')) return t('watchedList');
    if (p.get('state') === 'new') return t('newList');
    return t('filteredList');
  }

  async function loadList() {
    const seq = ++app.seq.list;
    const route = app.route;
    const { path, params } = listRequest(route);
    if (!app.list) $('#list-view').replaceChildren(h('p', { class: 'muted' }, t('loading')));
    try {
      const data = await api(path, { params });
      if (seq !== app.seq.list) return;
      app.list = data;
      const visible = new Set((data.items || []).map(ticketNo));
      for (const number of [...app.selected]) if (!visible.has(number)) app.selected.delete(number);
      keepFocus(renderList);
      focusHeading($('#list-view'));
    } catch (error) {
      if (seq === app.seq.list) renderViewError('list-view', error);
    }
  }

  function renderViewError(viewId, error) {
    if (error.status === 401) return;
    $(`#${viewId}`).replaceChildren(
      h('h1', { tabindex: '-1' }, t({ 403: 'forbidden', 404: 'notFound' }[error.status] || 'error')),
      h('p', { class: 'form-error', role: 'alert' }, error.message),
      h('p', {}, h('a', { href: app.lastListHash }, t('back'))));
    focusHeading($(`#${viewId}`));
  }

  function renderList() {
    const route = app.route;
    const title = listTitle(route);
    setTitle(title);
    $('#list-view').replaceChildren(
      h('h1', { id: 'list-title', tabindex: '-1' }, title),
      h('div', { id: 'list-toolbar', class: 'toolbar' }),
      bulkBar(),
      h('div', { class: 'table-wrap' }, ticketTable(route)),
      pager());
    renderListToolbar();
  }

  function renderListToolbar() {
    const route = app.route;
    const toolbar = $('#list-toolbar');
    if (!toolbar || route.kind === 'search') return;
    const queue = app.queues.find((q) => q.name === route.queue);
    const counts = queue?.counts || {};
    const label = (s) => (s in counts ? `${stateLabel(s)} (${counts[s]})` : stateLabel(s));
    const stateSelect = select('state', [['', t('allStates')], ...STATES.map((s) => [s, label(s)])],
      route.params.get('state') || '', {
        dataset: { focusKey: 'state-filter' },
        onchange: (e) => { location.hash = routeHash(route, { state: e.target.value, page: '' }); },
      });
    keepFocus(() => toolbar.replaceChildren(field(t('stateFilter'), stateSelect)));
  }

  function ticketTable(route) {
    const items = app.list.items || [];
    const sortable = route.kind !== 'search';
    const sort = listSort(route.params);
    const order = route.params.get('order') || 'asc';
    const allSelected = items.length > 0 && items.every((item) => app.selected.has(ticketNo(item)));
    const header = h('tr', {},
      h('th', { scope: 'col', class: 'col-check' }, h('input', {
        type: 'checkbox', 'aria-label': t('selectAll'), checked: allSelected,
        dataset: { focusKey: 'select-all' }, onchange: (e) => selectAll(items, e.target.checked),
      })),
      COLUMNS.map((col) => columnHeader(col, route, sortable && sort === col.sort ? order : null, sortable)),
      h('th', { scope: 'col' }, t('actions')));
    const rows = items.length ? items.map(ticketRow)
      : [h('tr', {}, h('td', { colspan: COLUMNS.length + 2, class: 'empty' }, t('noTickets')))];
    return h('table', { class: 'tickets', 'aria-labelledby': 'list-title' },
      h('thead', {}, header), h('tbody', {}, rows));
  }

  const columnClass = (col) => `col-${col.key}${col.optional ? ' col-optional' : ''}`;

  function columnHeader(col, route, order, sortable) {
    const cls = columnClass(col);
    if (!sortable || !col.sort) return h('th', { scope: 'col', class: cls }, t(col.label));
    const ariaSort = order === 'asc' ? 'ascending' : order === 'desc' ? 'descending' : 'none';
    const next = order === 'asc' ? 'desc' : 'asc';
    const arrow = order === 'asc' ? ' ▲' : order === 'desc' ? ' ▼' : '';
    return h('th', { scope: 'col', class: cls, 'aria-sort': ariaSort },
      button([t(col.label), h('span', { 'aria-hidden': 'true' }, arrow)], () => {
        location.hash = routeHash(route, { sort: col.sort, order: next, page: '' });
      }, { class: 'sort', title: t('sortBy', t(col.label)), dataset: { focusKey: `sort:${col.key}` } }));
  }

  function ticketRow(item) {
    const number = ticketNo(item);
    const classes = ['ticket-row', item.locked ? 'is-locked' : '', item.state === 'new' ? 'is-new' : ''];
    return h('tr', { class: classes.join(' ').trim(), dataset: { number } },
      h('td', { class: 'col-check' }, h('input', {
        type: 'checkbox', 'aria-label': t('selectTicket', number), checked: app.selected.has(number),
        dataset: { focusKey: `${number}:select` }, onchange: (e) => toggleSelected(number, e.target.checked),
      })),
      COLUMNS.map((col) => h('td', { class: columnClass(col) }, col.cell(item))),
      h('td', {}, rowActions(item)));
  }

  function rowActions(item) {
    const number = ticketNo(item);
    const mine = item.locked && item.owner === app.me?.username;
    const act = (label, key, onclick) => button(label, onclick, {
      class: 'small', 'aria-label': `${label} ${number}`, dataset: { focusKey: `${number}:${key}` },
    });
    return h('div', { class: 'row-actions' },
      act(mine ? t('unlock') : t('lock'), 'lock', () => runOne(number, mine ? 'unlock' : 'lock')),
      h('a', { href: ticketHref(number), class: 'button small', 'aria-label': `${t('zoom')} ${number}` },
        t('zoom')),
      act(t('close'), 'close', () => runOne(number, 'state', { state: 'closed successful' })),
      act(t('spam'), 'spam', () => runOne(number, 'spam')),
      act(t('move'), 'move', () => openMoveDialog([number], item.queue)));
  }

  function toggleSelected(number, on) {
    toggleSetMember(app.selected, number, on);
    keepFocus(renderList);
  }

  function selectAll(items, on) {
    for (const item of items) toggleSetMember(app.selected, ticketNo(item), on);
    keepFocus(renderList);
  }

  function toggleSetMember(set, value, on) {
    if (on) set.add(value);
    else set.delete(value);
  }

  function bulkBar() {
    const numbers = [...app.selected];
    const disabled = numbers.length === 0;
    const act = (label, key, onclick) =>
      button(label, onclick, { disabled, class: 'small', dataset: { focusKey: `bulk:${key}` } });
    return h('div', { class: 'bulk', role: 'group', 'aria-label': t('bulkActions') },
      h('span', { class: 'muted' }, t('selected', numbers.length)),
      act(t('lock'), 'lock', () => runMany(numbers, 'lock')),
      act(t('unlock'), 'unlock', () => runMany(numbers, 'unlock')),
      act(t('close'), 'close', () => runMany(numbers, 'state', { state: 'closed successful' })),
      act(t('spam'), 'spam', () => runMany(numbers, 'spam')),
      act(`${t('move')}…`, 'move', () => openMoveDialog(numbers)),
      act(`${t('state')}…`, 'state', () => openStateDialog(numbers)),
      act(`${t('priority')}…`, 'priority', () => openPriorityDialog(numbers, 3)));
  }

  function pager() {
    const total = Number(app.list.total || 0);
    const page = Number(app.list.page || 1);
    const size = Number(app.list.page_size || pageSize());
    const first = total ? (page - 1) * size + 1 : 0;
    const last = Math.min(total, page * size);
    const go = (target) => { location.hash = routeHash(app.route, { page: target }); };
    const sizeSelect = select('page_size', PAGE_SIZES.map((n) => [n, String(n)]), size, {
      dataset: { focusKey: 'page-size' },
      onchange: (e) => {
        localStorage.setItem('firstline.pageSize', e.target.value);
        location.hash = routeHash(app.route, { page_size: e.target.value, page: '' });
      },
    });
    return h('nav', { class: 'pager', 'aria-label': t('pages') },
      button(t('previous'), () => go(page - 1), { disabled: page <= 1, dataset: { focusKey: 'prev' } }),
      h('span', { class: 'page-info' }, t('pageInfo', first, last, total)),
      button(t('next'), () => go(page + 1), { disabled: last >= total, dataset: { focusKey: 'next' } }),
      field(t('pageSize'), sizeSelect));
  }

  // ------------------------------------------------------------------ running actions

  /** One action on one ticket from the list or zoom; errors (409 "locked by …") are shown. */
  async function runOne(number, action, body) {
    try {
      await postAction(number, action, body);
      afterChange();
    } catch (error) {
      if (error.status !== 401) notify(`${number}: ${error.message}`);
    }
  }

  /** The same action on many tickets, one after another; failures are listed, not fatal. */
  async function runMany(numbers, action, body) {
    const failures = [];
    for (const number of numbers) {
      try {
        await postAction(number, action, body);
      } catch (error) {
        if (error.status === 401) return;
        failures.push(t('bulkFailed', number, error.message));
      }
    }
    const summary = t('bulkDone', numbers.length - failures.length, numbers.length);
    notify([summary, ...failures].join(' · '), failures.length ? 'error' : 'success');
    app.selected.clear();
    afterChange(null);
  }

  /** Submit from a dialog: a single ticket throws so the dialog shows the error. */
  async function runFromDialog(numbers, action, body) {
    if (numbers.length > 1) return runMany(numbers, action, body);
    await postAction(numbers[0], action, body);
    afterChange();
  }

  function afterChange(message = t('done')) {
    if (message) notify(message, 'success');
    refreshCurrentView();
    scheduleRefresh('sidebar');
  }

  function refreshCurrentView() {
    const view = app.route?.view;
    if (view === 'list') loadList();
    else if (view === 'zoom') loadZoom();
  }

  // ------------------------------------------------------------------ zoom

  async function loadZoom() {
    const seq = ++app.seq.zoom;
    const number = app.route.number;
    if (app.zoom && ticketNo(app.zoom) !== number) {
      app.zoom = null;
      $('#zoom-view').replaceChildren(h('p', { class: 'muted' }, t('loading')));
    }
    try {
      const ticket = await api(ticketPath(number));
      if (seq !== app.seq.zoom) return;
      app.zoom = ticket;
      keepFocus(() => renderZoom(ticket));
      focusHeading($('#zoom-view'));
    } catch (error) {
      if (seq === app.seq.zoom) renderViewError('zoom-view', error);
    }
  }

  function renderZoom(ticket) {
    const number = ticketNo(ticket);
    const articles = ticket.articles || [];
    setTitle(`${number} ${ticket.title || ''}`);
    fill($('#zoom-view'),
      h('p', { class: 'crumbs' }, h('a', { href: app.lastListHash }, `← ${t('back')}`)),
      h('h1', { tabindex: '-1' }, ticket.title || '—'),
      h('p', { class: 'muted' }, `${t('ticketNumber')}${number}`),
      lockBanner(ticket),
      ticketFields(ticket),
      zoomActions(ticket),
      h('h2', {}, `${t('articles')} (${articles.length})`),
      h('ol', { class: 'articles' }, articles.map((article, i) => renderArticle(article, i > 0 ? ticket : null))));
  }

  function lockBanner(ticket) {
    if (!ticket.locked || ticket.owner === app.me?.username) return null;
    return h('p', { class: 'banner banner--warn', role: 'status' }, t('lockedBy', ticket.owner || '?'));
  }

  function ticketFields(ticket) {
    const rows = [
      [t('state'), stateLabel(ticket.state)],
      [t('queue'), h('a', { href: queueHref(ticket.queue) }, ticket.queue || '')],
      [t('priority'), priorityChip(ticket.priority)],
      [t('owner'), ticket.owner || '—'],
      [t('locked'), ticket.locked ? t('lockedBy', ticket.owner || '?') : t('notLocked')],
      [t('customer'), ticket.customer_email || ''],
      [t('created'), fmtTime(ticket.created_at)],
      [t('age'), fmtDuration(ageSeconds(ticket))],
      ticket.pending_until ? [t('pendingUntil'), fmtTime(ticket.pending_until)] : null,
      ticket.escalation_due_at ? [t('escalationDue'), [
        fmtTime(ticket.escalation_due_at), ' (', escalationKind(ticket.escalation_kind), ') ', escalationBadge(ticket),
      ]] : null,
    ].filter(Boolean);
    return h('dl', { class: 'fields' }, rows.map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
  }

  function zoomActions(ticket) {
    const number = ticketNo(ticket);
    const mine = ticket.locked && ticket.owner === app.me?.username;
    const act = (label, key, onclick) => button(label, onclick, { dataset: { focusKey: `zoom:${key}` } });
    return h('div', { class: 'action-bar', role: 'group', 'aria-label': t('ticketActions') },
      act(mine ? t('unlock') : t('lock'), 'lock', () => runOne(number, mine ? 'unlock' : 'lock')),
      act(`${t('answer')}…`, 'answer', () => openAnswerDialog(ticket)),
      act(`${t('note')}…`, 'note', () => openNoteDialog(number)),
      act(`${t('phoneCall')}…`, 'phone', () => openPhoneDialog(number)),
      act(`${t('changeOwner')}…`, 'owner', () => openOwnerDialog(number, ticket.owner)),
      act(`${t('move')}…`, 'move', () => openMoveDialog([number], ticket.queue)),
      act(`${t('state')}…`, 'state', () => openStateDialog([number], ticket.state)),
      act(`${t('priority')}…`, 'priority', () => openPriorityDialog([number], ticket.priority)),
      act(`${t('merge')}…`, 'merge', () => openMergeDialog(number)),
      act(t('spam'), 'spam', () => runOne(number, 'spam')),
      act(ticket.watched ? t('unwatch') : t('watch'), 'watch',
        () => runOne(number, ticket.watched ? 'unwatch' : 'watch')),
      h('a', { href: historyHref(number), class: 'button' }, t('history')));
  }

  function articleKind(article) {
    if (article.visible_to_customer === false || article.channel === 'internal') return 'internal';
    if (article.channel === 'phone') return 'phone';
    return ['agent', 'system'].includes(article.sender_type) ? article.sender_type : 'customer';
  }

  /** One article; ``ticket`` is given where the article may be split off into a new ticket. */
  function renderArticle(article, ticket = null) {
    const kind = articleKind(article);
    const when = article.created_at ?? article.occurred_at ?? '';
    const sender = article.from ?? article.from_ ?? '';
    return h('li', {}, h('article', { class: `article article--${kind}` },
      h('header', { class: 'article-head' },
        h('span', { class: `tag tag--${kind}` }, t(`kind.${kind}`)),
        h('span', { class: 'article-from' }, sender),
        article.to?.length ? h('span', { class: 'muted' }, `${t('to')}: ${article.to.join(', ')}`) : null,
        article.cc?.length ? h('span', { class: 'muted' }, `${t('cc')}: ${article.cc.join(', ')}`) : null,
        h('time', { datetime: when }, fmtTime(when))),
      article.subject ? h('h3', { class: 'article-subject' }, article.subject) : null,
      h('pre', { class: 'article-body' }, article.body || ''),
      article.body_html ? htmlToggle(article.body_html) : null,
      attachmentList(article),
      mailTools(article),
      ticket && article.article_id ? h('div', { class: 'article-tools' }, button(t('split'),
        () => splitArticle(ticket, article), {
          class: 'small', 'aria-label': t('splitArticle', article.subject || article.article_id),
          dataset: { focusKey: `split:${article.article_id}` },
        })) : null));
  }

  async function splitArticle(ticket, article) {
    if (!window.confirm(t('confirmSplit'))) return;
    try {
      const result = await postAction(ticketNo(ticket), 'split', { article_id: article.article_id });
      const created = result?.new_ticket;
      const newNumber = created && typeof created === 'object' ? ticketNo(created) : String(created ?? '');
      afterChange(t('splitDone', newNumber));
      if (newNumber) location.hash = ticketHref(newNumber);
    } catch (error) {
      if (error.status !== 401) notify(`${ticketNo(ticket)}: ${error.message}`);
    }
  }

  function htmlToggle(html) {
    const holder = h('div', { class: 'article-html' });
    const toggle = button(t('showHtml'), () => {
      const open = toggle.getAttribute('aria-expanded') === 'true';
      holder.replaceChildren(...(open ? [] : [sandboxedFrame(html)]));
      toggle.setAttribute('aria-expanded', String(!open));
      toggle.textContent = open ? t('showHtml') : t('showText');
    }, { class: 'small', 'aria-expanded': 'false' });
    return h('div', {}, toggle, holder);
  }

  /** The mail's (server-sanitised) HTML in a sandbox: no scripts, no same origin, no remote loads. */
  function sandboxedFrame(html) {
    const frame = h('iframe', { sandbox: '', referrerpolicy: 'no-referrer', title: t('htmlBody') });
    frame.srcdoc = FRAME_POLICY + html;
    return frame;
  }

  function attachmentList(article) {
    const attachments = article.attachments || [];
    if (!attachments.length) return null;
    return h('ul', { class: 'attachments', 'aria-label': t('attachments') },
      attachments.map((file) => h('li', {}, attachmentLink(article, file), ` ${fmtSize(file.size)}`)));
  }

  function attachmentLink(article, file) {
    const name = file.filename || file.part || '?';
    const mailId = file.mail_id || article.mail_id; // an answer's attachments name their mail
    if (!mailId || !file.part) return h('span', {}, name);
    return h('a', { href: `/api/mails/${enc(mailId)}/parts/${enc(file.part)}`, download: name }, name);
  }

  /** The files an answer may carry: each attachment of the zoom's articles once, by (mail, part). */
  function ticketAttachments(ticket) {
    const files = new Map();
    for (const article of ticket.articles || []) {
      for (const file of article.attachments || []) {
        const mailId = file.mail_id || article.mail_id;
        const key = JSON.stringify([mailId, file.part]);
        if (mailId && file.part && !files.has(key)) {
          files.set(key, { mail_id: mailId, part: file.part, filename: file.filename || file.part, size: file.size });
        }
      }
    }
    return [...files.values()];
  }

  function mailTools(article) {
    if (!article.mail_id) return null;
    const out = h('div', { class: 'mail-trace', 'aria-live': 'polite' });
    const show = async () => {
      try {
        out.replaceChildren(mailInfo(await api(`/api/mails/${enc(article.mail_id)}`)));
      } catch (error) {
        out.replaceChildren(h('p', { class: 'form-error' }, error.message));
      }
    };
    return h('div', { class: 'article-tools' },
      button(t('mailTrace'), show, { class: 'small' }),
      h('a', { href: `/api/mails/${enc(article.mail_id)}/raw`, target: '_blank', rel: 'noopener' }, t('rawMail')),
      out);
  }

  function mailInfo(mail) {
    const reasons = (mail.reasons || []).map((r) =>
      h('li', {}, typeof r === 'string' ? r : `${r.step || ''}: ${r.detail || ''}`));
    const rows = [
      [t('mailId'), mail.mail_id], [t('status'), mail.status], [t('queue'), mail.queue || '—'],
      [t('ticketNumber'), mail.ticket_number ? h('a', { href: ticketHref(mail.ticket_number) },
        mail.ticket_number) : '—'],
      [t('reasons'), reasons.length ? h('ul', {}, reasons) : '—'],
    ];
    return h('dl', { class: 'fields' }, rows.map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
  }

  // ------------------------------------------------------------------ dialogs

  function openDialog({ title, fields, submitLabel, onSubmit, wide = false }) {
    const dialog = $('#action-dialog');
    dialog.classList.toggle('wide', wide);
    $('#action-title').textContent = title;
    fill($('#action-fields'), fields);
    $('#action-error').textContent = '';
    const submit = $('#action-submit');
    submit.textContent = submitLabel;
    submit.disabled = false;
    app.dialogSubmit = onSubmit;
    dialog.showModal();
    const fieldsBox = $('#action-fields');
    ($('[autofocus]', fieldsBox) || $('select, input, textarea', fieldsBox))?.focus();
  }

  async function onDialogSubmit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    if (!form.reportValidity()) return;
    const submit = $('#action-submit');
    submit.disabled = true;
    $('#action-error').textContent = '';
    try {
      await app.dialogSubmit(new FormData(form));
      $('#action-dialog').close();
    } catch (error) {
      $('#action-error').textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  }

  async function openAnswerDialog(ticket) {
    const number = ticketNo(ticket);
    const body = h('textarea', { name: 'body', rows: '14', required: true, autofocus: true });
    const chooser = select('template', [['', t('noTemplate')]], '');
    let templates = [];
    let inserted = '';
    chooser.addEventListener('change', () => {
      const chosen = templates.find((tpl) => String(tpl.id ?? tpl.name) === chooser.value);
      const text = chosen ? chosen.body ?? '' : '';
      if (body.value.trim() && body.value !== inserted && !window.confirm(t('replaceText'))) return;
      body.value = text;
      inserted = text;
    });
    const preview = h('div', { class: 'answer-preview', 'aria-live': 'polite' });
    const showPreview = async () => {
      if (!body.value.trim()) {
        preview.replaceChildren(h('p', { class: 'form-error' }, t('previewNeedsText')));
        return;
      }
      try {
        const mail = await api(ticketPath(number, 'answer/preview'), { method: 'POST', body: { body: body.value } });
        preview.replaceChildren(
          h('h3', {}, t('previewTitle')),
          h('p', { class: 'preview-subject' }, h('strong', {}, `${t('subject')}: `), mail.subject || ''),
          h('pre', { class: 'article-body preview-text' }, mail.text || ''),
          (mail.template_errors || []).map((e) => h('p', { class: 'form-error' },
            t('templateProblem', e.template, e.detail))));
      } catch (error) {
        if (error.status !== 401) preview.replaceChildren(h('p', { class: 'form-error' }, error.message));
      }
    };
    body.addEventListener('input', () => preview.replaceChildren());
    const files = ticketAttachments(ticket);
    const fileList = files.length ? h('fieldset', { class: 'check-list answer-attachments' },
      h('legend', {}, t('answerAttachments')),
      files.map((file, index) => checkField(`${file.filename} (${fmtSize(file.size)})`,
        checkbox(false, { name: 'attachment', value: String(index) })))) : null;
    openDialog({
      title: t('answerTitle', number),
      fields: [field(t('template'), chooser), field(t('text'), body), fileList,
        h('div', { class: 'preview-bar' }, button(t('preview'), showPreview, { class: 'small', id: 'answer-preview' })),
        preview],
      submitLabel: t('send'),
      wide: true,
      onSubmit: async (form) => {
        const attachments = form.getAll('attachment').map((index) => files[Number(index)])
          .map((file) => ({ mail_id: file.mail_id, part: file.part }));
        await postAction(number, 'answer', {
          body: form.get('body'),
          template: form.get('template') || undefined,
          attachments: attachments.length ? attachments : undefined,
        });
        afterChange(t('answerQueued'));
      },
    });
    try {
      const data = await api('/api/templates', { params: { queue: ticket.queue, ticket: number } });
      templates = data.items || [];
      chooser.append(...templates.map((tpl) => h('option', { value: tpl.id ?? tpl.name }, tpl.name)));
    } catch (error) {
      if (error.status !== 401) $('#action-error').textContent = error.message;
    }
  }

  function openNoteDialog(number) {
    const body = h('textarea', { name: 'body', rows: '8', required: true, autofocus: true });
    openDialog({
      title: t('noteTitle', number),
      fields: [field(t('text'), body)],
      submitLabel: t('save'),
      wide: true,
      onSubmit: (form) => runFromDialog([number], 'note', { body: form.get('body') }),
    });
  }

  function openPhoneDialog(number) {
    const body = h('textarea', { name: 'body', rows: '8', required: true, autofocus: true });
    const subject = h('input', { name: 'subject', maxlength: '500' });
    const direction = select('direction', ['inbound', 'outbound'].map((d) => [d, t(`direction.${d}`)]), 'inbound');
    openDialog({
      title: t('phoneTitle', number),
      fields: [field(t('direction'), direction), field(t('subject'), subject), field(t('text'), body)],
      submitLabel: t('save'),
      wide: true,
      onSubmit: (form) => runFromDialog([number], 'phone', {
        body: form.get('body'), subject: form.get('subject') || undefined, direction: form.get('direction'),
      }),
    });
  }

  function openOwnerDialog(number, current) {
    const owner = h('input', { name: 'owner', value: current || '', autocomplete: 'off', autofocus: true,
      maxlength: '200' });
    openDialog({
      title: t('ownerTitle', number),
      fields: [field(t('newOwner'), owner)],
      submitLabel: t('save'),
      onSubmit: (form) => runFromDialog([number], 'owner', { owner: form.get('owner').trim() || null }),
    });
  }

  async function moveTargets() {
    if (app.moveTargets) return app.moveTargets;
    try {
      const data = await api('/api/queues', { params: { permission: 'move_into' } });
      app.moveTargets = data.items || [];
    } catch {
      return app.queues;
    }
    return app.moveTargets;
  }

  async function openMoveDialog(numbers, currentQueue) {
    const chooser = select('queue', [], '', { required: true });
    openDialog({
      title: numbers.length === 1 ? t('moveTitle', numbers[0]) : t('moveMany', numbers.length),
      fields: [field(t('targetQueue'), chooser)],
      submitLabel: t('move'),
      onSubmit: (form) => runFromDialog(numbers, 'move', { queue: form.get('queue') }),
    });
    const targets = (await moveTargets()).filter((q) => q.name !== currentQueue);
    chooser.replaceChildren(...targets.map((q) => h('option', { value: q.name }, q.name)));
  }

  function openStateDialog(numbers, current = 'open') {
    const options = NEXT_STATES.map((s) => [s, stateLabel(s)]);
    const chooser = select('state', options, NEXT_STATES.includes(current) ? current : 'open');
    const when = h('input', { type: 'datetime-local', name: 'pending_until', step: '60' });
    when.value = toLocalInput(new Date(Date.now() + 24 * 3600 * 1000));
    const whenField = field(t('pendingUntil'), when);
    const sync = () => {
      const pending = chooser.value.startsWith('pending');
      whenField.hidden = !pending;
      when.required = pending;
    };
    chooser.addEventListener('change', sync);
    sync();
    openDialog({
      title: numbers.length === 1 ? t('stateTitle', numbers[0]) : t('stateMany', numbers.length),
      fields: [field(t('newState'), chooser), whenField],
      submitLabel: t('save'),
      onSubmit: (form) => {
        const body = { state: form.get('state') };
        if (body.state.startsWith('pending')) body.pending_until = new Date(form.get('pending_until')).toISOString();
        return runFromDialog(numbers, 'state', body);
      },
    });
  }

  function openPriorityDialog(numbers, current) {
    const chooser = select('priority', PRIORITIES.map((p) => [p, priorityLabel(p)]), current || 3);
    openDialog({
      title: numbers.length === 1 ? t('priorityTitle', numbers[0]) : t('priorityMany', numbers.length),
      fields: [field(t('priority'), chooser)],
      submitLabel: t('save'),
      onSubmit: (form) => runFromDialog(numbers, 'priority', { priority: Number(form.get('priority')) }),
    });
  }

  function openMergeDialog(number) {
    const into = h('input', {
      name: 'into', required: true, inputmode: 'numeric', pattern: '[0-9]+', autocomplete: 'off', autofocus: true,
    });
    openDialog({
      title: t('mergeTitle', number),
      fields: [field(t('mergeInto'), into), h('p', { class: 'muted' }, t('mergeWarning'))],
      submitLabel: t('merge'),
      onSubmit: (form) => runFromDialog([number], 'merge', { into: form.get('into').trim() }),
    });
  }

  // ------------------------------------------------------------------ new phone and email tickets

  async function createQueues() {
    if (!app.createQueues) {
      const data = await api('/api/queues', { params: { permission: 'create' } });
      app.createQueues = data.items || [];
    }
    return app.createQueues;
  }

  async function loadNewTicket() {
    const seq = ++app.seq.create;
    const route = app.route;
    const view = $('#new-view');
    view.replaceChildren(h('p', { class: 'muted' }, t('loading')));
    try {
      const queues = await createQueues();
      if (seq !== app.seq.create) return;
      renderNewTicket(route.kind, queues, route.params.get('queue') || '');
      focusHeading(view);
    } catch (error) {
      if (seq === app.seq.create) renderViewError('new-view', error);
    }
  }

  function renderNewTicket(kind, queues, preferred) {
    const title = kind === 'email' ? t('newEmailTicket') : t('newPhoneTicket');
    setTitle(title);
    const view = $('#new-view');
    const other = kind === 'email' ? 'phone' : 'email';
    const switcher = h('p', { class: 'crumbs' },
      h('a', { href: `#/new/${other}` }, other === 'email' ? t('newEmailTicket') : t('newPhoneTicket')));
    if (!queues.length) {
      fill(view, h('h1', { id: 'new-title', tabindex: '-1' }, title), h('p', { class: 'muted' }, t('noCreateQueues')));
      return;
    }
    const names = queues.map((q) => q.name);
    const queue = select('queue', names.map((n) => [n, n]), names.includes(preferred) ? preferred : names[0],
      { required: true });
    const email = h('input', { name: 'customer_email', type: 'email', required: true, maxlength: '320',
      autocomplete: 'off', autofocus: true });
    const name = h('input', { name: 'customer_name', maxlength: '200', autocomplete: 'off' });
    const cc = h('input', { name: 'cc', maxlength: '1000', autocomplete: 'off' });
    const subject = h('input', { name: 'subject', required: true, maxlength: '1000' });
    const body = h('textarea', { name: 'body', rows: '10', required: true });
    const priority = select('priority', PRIORITIES.map((n) => [n, priorityLabel(n)]), 3);
    const state = select('next_state', CREATE_STATES.map((n) => [n, stateLabel(n)]), 'open');
    const when = h('input', { type: 'datetime-local', name: 'pending_until', step: '60' });
    when.value = toLocalInput(new Date(Date.now() + 24 * 3600 * 1000));
    const whenField = field(t('pendingUntil'), when);
    const syncPending = () => {
      const pending = state.value.startsWith('pending');
      whenField.hidden = !pending;
      when.required = pending;
    };
    state.addEventListener('change', syncPending);
    syncPending();
    const lock = checkbox(false, { name: 'lock' });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'primary' }, t('createTicket'));
    const form = h('form', { class: 'new-ticket', 'aria-labelledby': 'new-title' },
      h('div', { class: 'form-grid' },
        field(t('customerEmail'), email), field(t('customerName'), name),
        kind === 'email' ? field(t('cc'), cc) : null,
        field(t('queue'), queue), field(t('priority'), priority), field(t('initialState'), state), whenField),
      field(t('subject'), subject),
      field(kind === 'email' ? t('emailBody') : t('phoneBody'), body),
      h('div', { class: 'checks' }, checkField(t('lockToMe'), lock)),
      error,
      h('div', { class: 'dialog-buttons' }, submit));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      const request = {
        kind,
        queue: queue.value,
        customer: { email: email.value.trim(), name: name.value.trim() || undefined },
        subject: subject.value.trim(),
        body: body.value,
        priority: Number(priority.value),
        next_state: state.value,
        lock: lock.checked,
      };
      if (state.value.startsWith('pending')) request.pending_until = new Date(when.value).toISOString();
      const copies = cc.value.split(',').map((a) => a.trim()).filter(Boolean);
      if (kind === 'email' && copies.length) request.cc = copies;
      submit.disabled = true;
      error.textContent = '';
      try {
        const created = await api('/api/tickets', { method: 'POST', body: request });
        notify(t('ticketCreated', created.number), 'success');
        scheduleRefresh('sidebar');
        app.focusOnRender = true;
        location.hash = ticketHref(created.number);
      } catch (failure) {
        error.textContent = failure.message;
      } finally {
        submit.disabled = false;
      }
    });
    fill(view, h('h1', { id: 'new-title', tabindex: '-1' }, title), switcher, form);
    if (!app.focusOnRender) email.focus();
  }

  // ------------------------------------------------------------------ preferences

  async function loadPreferences() {
    const seq = ++app.seq.prefs;
    const view = $('#prefs-view');
    view.replaceChildren(h('p', { class: 'muted' }, t('loading')));
    try {
      const prefs = await api('/api/me/preferences');
      if (!app.queues.length) await loadQueues();
      if (seq !== app.seq.prefs) return;
      app.prefs = prefs;
      renderPreferences(prefs);
      focusHeading(view);
    } catch (error) {
      if (seq === app.seq.prefs) renderViewError('prefs-view', error);
    }
  }

  function renderPreferences(prefs) {
    setTitle(t('preferencesTitle'));
    const language = select('language', Object.keys(MESSAGES).map((code) => [code, t(`lang.${code}`)]),
      prefs.language || lang);
    const notices = NOTICE_KINDS.map((kind) => checkbox(prefs.notifications?.[kind], { value: kind }));
    const queues = checkList(t('myQueues'), app.queues.map((q) => q.name), prefs.my_queues || [], t('myQueuesHelp'));
    const error = h('p', { class: 'form-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'primary' }, t('save'));
    const form = h('form', { class: 'preferences', 'aria-labelledby': 'prefs-title' },
      field(t('language'), language),
      h('fieldset', { class: 'check-list' }, h('legend', {}, t('notifications')),
        notices.map((box) => checkField(t(`notice.${box.value}`), box))),
      queues.el,
      error,
      h('div', { class: 'dialog-buttons' }, submit));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      error.textContent = '';
      const body = {
        language: language.value,
        notifications: Object.fromEntries(notices.map((box) => [box.value, box.checked])),
        my_queues: queues.value(),
      };
      try {
        app.prefs = await api('/api/me/preferences', { method: 'PUT', body });
        notify(t('preferencesSaved'), 'success');
        if (app.prefs.language && app.prefs.language !== lang) setLanguage(app.prefs.language);
        else renderQueueTree();
      } catch (failure) {
        error.textContent = failure.message;
      } finally {
        submit.disabled = false;
      }
    });
    fill($('#prefs-view'), h('h1', { id: 'prefs-title', tabindex: '-1' }, t('preferencesTitle')), form);
  }

  // ------------------------------------------------------------------ history (time travel)

  const eventTime = (ev) => ev.occurred_at ?? ev.recorded_at ?? '';

  async function loadHistory(at) {
    const seq = ++app.seq.history;
    const number = app.route.number;
    try {
      const all = await api(ticketPath(number, 'history'));
      const snapshot = at ? await api(ticketPath(number, 'history'), { params: { at } }) : all;
      if (seq !== app.seq.history) return;
      app.history = { number, events: all.events || [] };
      renderHistory(number, at);
      showSnapshot(snapshot, at);
      focusHeading($('#history-view'));
    } catch (error) {
      if (seq === app.seq.history) renderViewError('history-view', error);
    }
  }

  function renderHistory(number, at) {
    const events = app.history.events;
    setTitle(t('historyTitle', number));
    const slider = h('input', {
      id: 'history-slider', type: 'range', min: '0', max: String(Math.max(0, events.length - 1)), step: '1',
      value: String(indexAt(events, at)), 'aria-describedby': 'history-instant',
    });
    const instant = h('input', { id: 'history-at', type: 'datetime-local', step: '1' });
    if (at) instant.value = toLocalInput(new Date(at), true);
    let timer = null;
    slider.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => showInstant(eventTime(events[Number(slider.value)])), 150);
    });
    const form = h('form', { class: 'history-controls', onsubmit: (e) => {
      e.preventDefault();
      if (instant.value) showInstant(new Date(instant.value).toISOString());
    } }, field(t('instant'), slider), field(t('time'), instant), h('button', { type: 'submit' }, t('showAt')));
    fill($('#history-view'),
      h('p', { class: 'crumbs' }, h('a', { href: ticketHref(number) }, `← ${t('zoom')} ${number}`)),
      h('h1', { tabindex: '-1' }, t('historyTitle', number)),
      events.length ? form : null,
      h('p', { id: 'history-instant', class: 'muted', 'aria-live': 'polite' }),
      h('div', { id: 'history-snapshot' }),
      h('h2', {}, t('events')),
      h('div', { class: 'table-wrap' }, eventsTable(events)));
  }

  function indexAt(events, at) {
    if (!at) return Math.max(0, events.length - 1);
    const limit = Date.parse(at);
    let index = 0;
    events.forEach((ev, i) => { if (Date.parse(eventTime(ev)) <= limit) index = i; });
    return index;
  }

  async function showInstant(at) {
    const number = app.history.number;
    const seq = ++app.seq.history;
    window.history.replaceState(null, '', `${historyHref(number)}?at=${enc(at)}`);
    try {
      const snapshot = await api(ticketPath(number, 'history'), { params: { at } });
      if (seq === app.seq.history) showSnapshot(snapshot, at);
    } catch (error) {
      if (error.status !== 401) notify(error.message);
    }
  }

  function showSnapshot(snapshot, at) {
    const ticket = snapshot.ticket || {};
    const shownAt = at || snapshot.at || '';
    $('#history-instant').textContent = shownAt ? t('asOf', fmtTime(shownAt)) : '';
    const slider = $('#history-slider');
    if (slider) slider.value = String(indexAt(app.history.events, shownAt));
    const instantInput = $('#history-at');
    if (instantInput && shownAt) instantInput.value = toLocalInput(new Date(shownAt), true);
    $('#history-snapshot').replaceChildren(h('dl', { class: 'fields' }, [
      [t('title'), ticket.title || ''], [t('state'), stateLabel(ticket.state)], [t('queue'), ticket.queue || ''],
      [t('priority'), priorityLabel(ticket.priority)], [t('owner'), ticket.owner || '—'], [t('locked'), lockText(ticket)],
      [t('articles'), String((ticket.articles || []).length || ticket.article_count || 0)],
    ].map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)])));
    markFutureEvents(shownAt);
  }

  function markFutureEvents(at) {
    const limit = at ? Date.parse(at) : Infinity;
    for (const row of document.querySelectorAll('#history-view tr[data-time]')) {
      const future = Date.parse(row.dataset.time) > limit;
      row.classList.toggle('is-future', future);
      row.title = future ? t('afterInstant') : '';
    }
  }

  function eventsTable(events) {
    const header = h('tr', {}, ['version', 'time', 'event', 'actor', 'details'].map((key) =>
      h('th', { scope: 'col' }, t(key))));
    const rows = events.map((ev, i) => h('tr', { dataset: { time: eventTime(ev) } },
      h('td', {}, String(ev.stream_version ?? i + 1)),
      h('td', {}, h('time', { datetime: eventTime(ev) }, fmtTime(eventTime(ev)))),
      h('td', {}, ev.type || ''),
      h('td', {}, typeof ev.actor === 'string' ? ev.actor : ev.actor?.username ?? ev.actor?.id ?? ''),
      h('td', { class: 'event-details' }, eventSummary(ev.data))));
    return h('table', { class: 'events' }, h('thead', {}, header), h('tbody', {}, rows));
  }

  function eventSummary(data) {
    if (!data || typeof data !== 'object') return '';
    return Object.entries(data)
      .filter(([key, value]) => !key.endsWith('ticket_id') && value !== null && value !== '' && typeof value !== 'object')
      .map(([key, value]) => `${key}: ${String(value).slice(0, 80)}`)
      .join(' · ');
  }

  // ------------------------------------------------------------------ administration (admins only)

  const ADMIN_TABS = ['agents', 'groups', 'queues', 'templates', 'filters', 'addresses'];
  const PERMISSION_KINDS = ['ro', 'move_into', 'create', 'note', 'owner', 'priority', 'rw'];
  const FOLLOW_UP_POLICIES = ['reopen', 'reject', 'new_ticket'];
  const AUTO_RESPONSE_KINDS = ['new_ticket', 'follow_up_closed_reject', 'follow_up_closed_new'];
  const FILTER_FIELDS = ['From', 'To', 'Cc', 'Reply-To', 'Subject', 'X-Spam-Flag', 'X-Spam-Score', 'List-Id', 'body'];
  const FILTER_FLAGS = ['mark_spam', 'ignore', 'stop'];
  const LANGUAGES = ['de', 'en', 'es', 'fr', 'it', 'nl', 'pl', 'pt', 'ru'];
  const QUEUE_DEFAULTS = {
    display_name: 'Firstline',
    salutation: "Dear {{ customer_name or 'customer' }},",
    signature: '-- \nFirstline support',
  };

  const adminApi = (path, options) => api(`/api/admin${path}`, options);
  const adminHref = (tab) => `#/admin/${tab}`;
  const itemsOf = (data) => (data && Array.isArray(data.items) ? data.items : []);
  const orNothing = (promise) => promise.catch((error) => {
    if (error.status === 401) throw error;
    notify(error.message);
    return { items: [] };
  });

  /** What each screen needs, fetched together. Router being down only empties its own lists. */
  const ADMIN_LOADERS = {
    agents: async () => {
      const [agents, queues, groups, roles] = await Promise.all([
        adminApi('/agents', { params: { page_size: 500 } }), adminApi('/queues'), adminApi('/groups'),
        adminApi('/roles')]);
      return { agents: itemsOf(agents), queues: itemsOf(queues), groups: itemsOf(groups), roles: itemsOf(roles) };
    },
    groups: async () => {
      const [groups, roles, queues] = await Promise.all([adminApi('/groups'), adminApi('/roles'), adminApi('/queues')]);
      return { groups: itemsOf(groups), roles: itemsOf(roles), queues: itemsOf(queues) };
    },
    queues: async () => {
      const [queues, groups, addresses] = await Promise.all([
        adminApi('/queues'), adminApi('/groups'), orNothing(adminApi('/system-addresses'))]);
      return { queues: itemsOf(queues), groups: itemsOf(groups), addresses: itemsOf(addresses) };
    },
    templates: async () => {
      const [templates, queues] = await Promise.all([adminApi('/templates'), adminApi('/queues')]);
      return { templates: itemsOf(templates), queues: itemsOf(queues) };
    },
    filters: async () => {
      const [filters, queues] = await Promise.all([adminApi('/filters'), adminApi('/queues')]);
      return { filters: itemsOf(filters), queues: itemsOf(queues) };
    },
    addresses: async () => {
      const [addresses, queues] = await Promise.all([adminApi('/system-addresses'), adminApi('/queues')]);
      return { addresses: itemsOf(addresses), queues: itemsOf(queues) };
    },
  };

  async function loadAdmin() {
    const seq = ++app.seq.admin;
    const tab = app.route.tab;
    const view = $('#admin-view');
    if (!app.me?.is_admin) {
      renderViewError('admin-view', new ApiError(403, t('adminOnly'), null));
      return;
    }
    if (!ADMIN_TABS.includes(tab)) {
      renderViewError('admin-view', new ApiError(404, t('notFound'), null));
      return;
    }
    if (app.admin?.tab !== tab) view.replaceChildren(h('p', { class: 'muted' }, t('loading')));
    try {
      const data = await ADMIN_LOADERS[tab]();
      if (seq !== app.seq.admin) return;
      app.admin = { tab, ...data };
      keepFocus(renderAdmin);
      focusHeading(view);
    } catch (error) {
      if (seq === app.seq.admin) {
        app.admin = null;
        renderViewError('admin-view', error);
      }
    }
  }

  function renderAdmin() {
    const tab = app.admin.tab;
    const title = `${t('admin')}: ${t(`admin.${tab}`)}`;
    setTitle(title);
    const renderers = {
      agents: agentsScreen, groups: groupsScreen, queues: queuesScreen,
      templates: templatesScreen, filters: filtersScreen, addresses: addressesScreen,
    };
    fill($('#admin-view'),
      h('h1', { id: 'admin-title', tabindex: '-1' }, title),
      h('nav', { class: 'tabs', 'aria-label': t('adminSections') }, ADMIN_TABS.map((name) =>
        h('a', { href: adminHref(name), 'aria-current': name === tab ? 'page' : null,
          dataset: { focusKey: `tab:${name}` } }, t(`admin.${name}`)))),
      renderers[tab]());
  }

  // -------------------------------------------- admin building blocks

  function adminButton(label, key, onclick, { primary = false, aria } = {}) {
    return button(label, onclick, {
      class: primary ? 'primary' : 'small', 'aria-label': aria, dataset: { focusKey: `admin:${key}` },
    });
  }

  const adminToolbar = (...children) => h('div', { class: 'toolbar admin-toolbar' }, children);

  function adminTable(label, headings, rows) {
    const body = rows.length ? rows
      : [h('tr', {}, h('td', { colspan: headings.length, class: 'empty' }, t('nothingYet')))];
    return h('div', { class: 'table-wrap' }, h('table', { class: 'admin-table', 'aria-label': label },
      h('thead', {}, h('tr', {}, headings.map((text) => h('th', { scope: 'col' }, text)))),
      h('tbody', {}, body)));
  }

  const grantSummary = (grants) => Object.entries(grants || {})
    .map(([name, kinds]) => `${name}: ${(kinds || []).join(', ')}`).join(' · ');

  function checkbox(checked, props = {}) {
    return h('input', { type: 'checkbox', checked: Boolean(checked), ...props });
  }

  function checkField(label, control) {
    return h('label', { class: 'check' }, control, ` ${label}`);
  }

  function numberInput(name, value) {
    return h('input', { name, type: 'number', min: '0', step: '1', value: String(value ?? 0), inputmode: 'numeric' });
  }

  function datalist(values) {
    return h('datalist', { id: uid('list') }, values.map((value) => h('option', { value })));
  }

  /** A table of checkboxes: one row per queue (or group), one column per permission kind. */
  function permissionGrid(caption, names, grants) {
    const boxes = [];
    const rows = names.map((name) => h('tr', {},
      h('th', { scope: 'row' }, name),
      PERMISSION_KINDS.map((kind) => {
        const box = checkbox((grants?.[name] || []).includes(kind), {
          'aria-label': `${name}: ${kind}`, title: t(`perm.${kind}`), dataset: { grant: name, kind },
        });
        boxes.push(box);
        return h('td', {}, box);
      })));
    const head = h('tr', {}, h('th', { scope: 'col' }, t('name')),
      PERMISSION_KINDS.map((kind) => h('th', { scope: 'col', title: t(`perm.${kind}`) }, kind)));
    const body = rows.length ? rows
      : [h('tr', {}, h('td', { colspan: PERMISSION_KINDS.length + 1, class: 'empty' }, t('nothingYet')))];
    return {
      el: h('div', { class: 'grid-wrap' }, h('table', { class: 'grid' }, h('caption', {}, caption),
        h('thead', {}, head), h('tbody', {}, body))),
      value: () => {
        const grants = {};
        for (const box of boxes) if (box.checked) (grants[box.dataset.grant] ||= []).push(box.dataset.kind);
        return grants;
      },
    };
  }

  function checkList(legend, names, selected = [], help = '') {
    const boxes = names.map((name) => checkbox(selected.includes(name), { value: name }));
    return {
      el: h('fieldset', { class: 'check-list' }, h('legend', {}, legend),
        help ? h('p', { class: 'muted' }, help) : null,
        boxes.length ? boxes.map((box) => checkField(box.value, box)) : h('span', { class: 'muted' }, t('nothingYet'))),
      value: () => boxes.filter((box) => box.checked).map((box) => box.value),
    };
  }

  /** Editable key → value rows (filter conditions, language queues). */
  function pairEditor({ legend, keyLabel, valueLabel, entries, keySuggestions = [], valueOptions = null, addLabel }) {
    const rows = [];
    const suggestions = datalist(keySuggestions);
    const list = h('div', { class: 'pairs' });
    const addRow = (key = '', value = '') => {
      const keyInput = h('input', { value: key, list: suggestions.id, 'aria-label': keyLabel, placeholder: keyLabel,
        required: true, autocomplete: 'off' });
      const valueInput = valueOptions
        ? select('', [['', '—'], ...valueOptions.map((v) => [v, v])], value, { 'aria-label': valueLabel, required: true })
        : h('input', { value, 'aria-label': valueLabel, placeholder: valueLabel, required: true, autocomplete: 'off' });
      const entry = { keyInput, valueInput };
      entry.row = h('div', { class: 'pair' }, keyInput, valueInput, button('×', () => {
        entry.row.remove();
        rows.splice(rows.indexOf(entry), 1);
      }, { class: 'small', 'aria-label': t('remove'), title: t('remove') }));
      rows.push(entry);
      list.append(entry.row);
      return entry;
    };
    for (const [key, value] of entries) addRow(key, String(value));
    return {
      el: h('fieldset', { class: 'pairs-editor' }, h('legend', {}, legend), suggestions, list,
        button(addLabel, () => addRow().keyInput.focus(), { class: 'small' })),
      addRow,
      value: () => Object.fromEntries(rows.map((r) => [r.keyInput.value.trim(), r.valueInput.value])
        .filter(([key]) => key)),
    };
  }

  /** Run an admin change from a list (errors shown as alerts), then reload the screen. */
  async function adminAction(run, message) {
    try {
      await run();
      afterAdminChange(message);
    } catch (error) {
      if (error.status !== 401) notify(error.message);
    }
  }

  function afterAdminChange(message = t('saved')) {
    notify(message, 'success');
    app.moveTargets = null;
    loadAdmin();
    scheduleRefresh('sidebar');
  }

  // -------------------------------------------- agents

  function agentsScreen() {
    const rows = app.admin.agents.map((agent) => {
      const who = agent.username;
      return h('tr', { class: agent.valid ? '' : 'is-disabled', dataset: { agent: who } },
        h('td', {}, h('strong', {}, who), agent.full_name ? h('div', { class: 'muted' }, agent.full_name) : null),
        h('td', {}, agent.email || ''),
        h('td', {}, agent.is_admin ? t('yes') : t('no')),
        h('td', {}, agent.valid ? t('active') : t('disabled')),
        h('td', { class: 'grants' }, grantSummary(agent.permissions) || '—'),
        h('td', { class: 'grants' }, [grantSummary(agent.groups), (agent.roles || []).join(', ')]
          .filter(Boolean).join(' · ') || '—'),
        h('td', {}, h('div', { class: 'row-actions' },
          adminButton(t('edit'), `agent:${who}:edit`, () => openAgentDialog(agent), { aria: `${t('edit')} ${who}` }),
          adminButton(agent.valid ? t('disable') : t('enable'), `agent:${who}:valid`,
            () => adminAction(() => adminApi(`/agents/${enc(who)}`, { method: 'PATCH', body: { valid: !agent.valid } }),
              agent.valid ? t('agentDisabled', who) : t('agentEnabled', who)),
            { aria: `${agent.valid ? t('disable') : t('enable')} ${who}` }),
          adminButton(t('endSessions'), `agent:${who}:sessions`, () => revokeSessions(who),
            { aria: `${t('endSessions')} ${who}` }))));
    });
    return [
      adminToolbar(adminButton(`${t('newAgent')}…`, 'new-agent', () => openAgentDialog(null), { primary: true })),
      adminTable(t('admin.agents'), [t('username'), t('email'), t('administrator'), t('status'),
        t('queuePermissions'), t('groupsAndRoles'), t('actions')], rows),
    ];
  }

  async function revokeSessions(username) {
    try {
      const result = await adminApi(`/agents/${enc(username)}/sessions`, { method: 'DELETE' });
      notify(t('sessionsEnded', result?.revoked ?? 0, username), 'success');
    } catch (error) {
      if (error.status !== 401) notify(error.message);
    }
  }

  function openAgentDialog(agent) {
    const { queues, groups, roles } = app.admin;
    const creating = !agent;
    const username = h('input', { name: 'username', required: true, maxlength: '64', autocomplete: 'off',
      autofocus: creating });
    const password = h('input', { name: 'password', type: 'password', minlength: '8', maxlength: '1024',
      required: creating, autocomplete: 'new-password', autofocus: !creating });
    const fullName = h('input', { name: 'full_name', maxlength: '200', value: agent?.full_name || '' });
    const email = h('input', { name: 'email', type: 'email', maxlength: '320', value: agent?.email || '' });
    const isAdmin = checkbox(agent?.is_admin, { name: 'is_admin' });
    const audit = checkbox(agent?.capabilities?.includes('audit'), { name: 'audit' });
    const queueGrid = permissionGrid(t('queuePermissions'), queues.map((q) => q.name), agent?.permissions);
    const groupGrid = permissionGrid(t('groupPermissions'), groups.map((g) => g.name), agent?.groups);
    const roleList = checkList(t('roles'), roles.map((r) => r.name), agent?.roles || []);
    openDialog({
      title: creating ? t('newAgent') : t('editAgent', agent.username),
      fields: [
        creating ? field(t('username'), username) : null,
        field(creating ? t('password') : t('newPassword'), password),
        field(t('fullName'), fullName),
        field(t('email'), email),
        h('div', { class: 'checks' }, checkField(t('administrator'), isAdmin), checkField(t('auditCapability'), audit)),
        queueGrid.el,
        groupGrid.el,
        roleList.el,
      ],
      submitLabel: t('save'),
      wide: true,
      onSubmit: async () => {
        const body = {
          full_name: fullName.value.trim(),
          email: email.value.trim() || null,
          is_admin: isAdmin.checked,
          capabilities: audit.checked ? ['audit'] : [],
          permissions: queueGrid.value(),
          groups: groupGrid.value(),
          roles: roleList.value(),
        };
        if (password.value) body.password = password.value;
        if (creating) {
          const name = username.value.trim();
          await adminApi('/agents', { method: 'POST', body: { username: name, ...body } });
          afterAdminChange(t('agentCreated', name));
        } else {
          await adminApi(`/agents/${enc(agent.username)}`, { method: 'PATCH', body });
          afterAdminChange(t('saved'));
        }
      },
    });
  }

  // -------------------------------------------- groups and roles

  function groupsScreen() {
    const { groups, roles } = app.admin;
    const groupRows = groups.map((g) => h('tr', { dataset: { group: g.name } },
      h('td', {}, g.name), h('td', {}, g.comment || ''), h('td', {}, (g.queues || []).join(', ') || '—')));
    const roleRows = roles.map((r) => h('tr', { dataset: { role: r.name } },
      h('td', {}, r.name), h('td', {}, r.comment || ''),
      h('td', { class: 'grants' }, grantSummary(r.permissions) || '—'),
      h('td', { class: 'grants' }, grantSummary(r.groups) || '—'),
      h('td', {}, adminButton(t('edit'), `role:${r.name}`, () => openRoleDialog(r), { aria: `${t('edit')} ${r.name}` }))));
    return [
      h('h2', {}, t('groups')),
      h('p', { class: 'muted' }, t('groupsHelp')),
      adminToolbar(adminButton(`${t('newGroup')}…`, 'new-group', openGroupDialog, { primary: true })),
      adminTable(t('groups'), [t('name'), t('comment'), t('queues')], groupRows),
      h('h2', {}, t('roles')),
      h('p', { class: 'muted' }, t('rolesHelp')),
      adminToolbar(adminButton(`${t('newRole')}…`, 'new-role', () => openRoleDialog(null), { primary: true })),
      adminTable(t('roles'), [t('name'), t('comment'), t('queuePermissions'), t('groupPermissions'), t('actions')],
        roleRows),
    ];
  }

  function openGroupDialog() {
    const name = h('input', { name: 'name', required: true, maxlength: '100', autocomplete: 'off', autofocus: true });
    const comment = h('input', { name: 'comment', maxlength: '500' });
    openDialog({
      title: t('newGroup'),
      fields: [field(t('name'), name), field(t('comment'), comment)],
      submitLabel: t('save'),
      onSubmit: async () => {
        await adminApi('/groups', { method: 'POST', body: { name: name.value.trim(), comment: comment.value } });
        afterAdminChange(t('saved'));
      },
    });
  }

  function openRoleDialog(role) {
    const { queues, groups } = app.admin;
    const creating = !role;
    const name = h('input', { name: 'name', required: true, maxlength: '100', autocomplete: 'off', autofocus: true });
    const comment = h('input', { name: 'comment', maxlength: '500', value: role?.comment || '', autofocus: !creating });
    const queueGrid = permissionGrid(t('queuePermissions'), queues.map((q) => q.name), role?.permissions);
    const groupGrid = permissionGrid(t('groupPermissions'), groups.map((g) => g.name), role?.groups);
    openDialog({
      title: creating ? t('newRole') : t('editRole', role.name),
      fields: [creating ? field(t('name'), name) : null, field(t('comment'), comment), queueGrid.el, groupGrid.el],
      submitLabel: t('save'),
      wide: true,
      onSubmit: async () => {
        const roleName = creating ? name.value.trim() : role.name;
        const body = { comment: comment.value, permissions: queueGrid.value(), groups: groupGrid.value() };
        await adminApi(`/roles/${enc(roleName)}`, { method: 'PUT', body });
        afterAdminChange(t('saved'));
      },
    });
  }

  // -------------------------------------------- queues

  function queuesScreen() {
    const rows = app.admin.queues.map((q) => h('tr', { dataset: { queue: q.name } },
      h('td', {}, h('strong', {}, q.name), q.comment ? h('div', { class: 'muted' }, q.comment) : null),
      h('td', {}, q.group || '—'),
      h('td', {}, q.parent || '—'),
      h('td', {}, q.system_address || '—'),
      h('td', {}, t(`followUp.${q.follow_up_policy || 'reopen'}`)),
      h('td', {}, q.unlock_timeout_minutes ? t('minutes', q.unlock_timeout_minutes) : '—'),
      h('td', {}, `${openCount(q)} / ${q.total ?? 0}`),
      h('td', {}, q.configured === false ? t('notConfigured') : q.valid === false ? t('disabled') : t('active')),
      h('td', {}, adminButton(t('edit'), `queue:${q.name}`, () => openQueueDialog(q), { aria: `${t('edit')} ${q.name}` }))));
    return [
      adminToolbar(adminButton(`${t('newQueue')}…`, 'new-queue', () => openQueueDialog(null), { primary: true })),
      adminTable(t('admin.queues'), [t('name'), t('group'), t('parentQueue'), t('systemAddress'), t('followUpPolicy'),
        t('unlockTimeout'), t('openTotal'), t('status'), t('actions')], rows),
    ];
  }

  function autoResponseEditor(kind, current) {
    const initial = current ? (current.enabled === false ? 'off' : 'on') : 'default';
    const mode = select('', [['default', t('autoDefault')], ['on', t('autoOn')], ['off', t('autoOff')]], initial);
    const subject = h('input', { value: current?.subject || '', maxlength: '500' });
    const body = h('textarea', { rows: '4' }, current?.body || '');
    const texts = h('div', { class: 'auto-texts' }, field(t('subject'), subject), field(t('text'), body));
    const sync = () => {
      texts.hidden = mode.value === 'default';
      subject.required = mode.value === 'on';
      body.required = mode.value === 'on';
    };
    mode.addEventListener('change', sync);
    sync();
    return {
      kind,
      el: h('fieldset', { class: 'auto-response' }, h('legend', {}, t(`auto.${kind}`)), field(t('autoMode'), mode), texts),
      value: () => (mode.value === 'default' ? null
        : { enabled: mode.value === 'on', subject: subject.value, body: body.value }),
    };
  }

  function openQueueDialog(queue) {
    const { queues, groups, addresses } = app.admin;
    const creating = !queue;
    const q = queue || {};
    const groupList = datalist(groups.map((g) => g.name));
    const addressList = datalist(addresses.map((a) => a.email));
    const name = h('input', { name: 'name', required: true, maxlength: '200', autocomplete: 'off', autofocus: true });
    const group = h('input', { name: 'group', required: true, maxlength: '100', value: q.group || '',
      list: groupList.id, autocomplete: 'off', autofocus: !creating });
    const parents = queues.filter((other) => other.name !== q.name).map((other) => [other.name, other.name]);
    const parent = select('parent', [['', t('none')], ...parents], q.parent || '');
    const comment = h('input', { name: 'comment', maxlength: '500', value: q.comment || '' });
    const address = h('input', { name: 'system_address', type: 'email', required: true, list: addressList.id,
      value: q.system_address || addresses[0]?.email || '', autocomplete: 'off' });
    const displayName = h('input', { name: 'display_name', maxlength: '200',
      value: q.display_name ?? QUEUE_DEFAULTS.display_name });
    const salutation = h('textarea', { name: 'salutation', rows: '2' }, q.salutation ?? QUEUE_DEFAULTS.salutation);
    const signature = h('textarea', { name: 'signature', rows: '3' }, q.signature ?? QUEUE_DEFAULTS.signature);
    const followUp = select('follow_up_policy', FOLLOW_UP_POLICIES.map((p) => [p, t(`followUp.${p}`)]),
      q.follow_up_policy || 'reopen');
    const unlock = numberInput('unlock_timeout_minutes', q.unlock_timeout_minutes);
    const firstResponse = numberInput('first_response_minutes', q.first_response_minutes);
    const valid = checkbox(q.valid !== false, { name: 'valid' });
    const responses = AUTO_RESPONSE_KINDS.map((kind) => autoResponseEditor(kind, q.auto_responses?.[kind]));
    openDialog({
      title: creating ? t('newQueue') : t('editQueue', q.name),
      fields: [
        groupList, addressList,
        creating ? field(t('name'), name) : null,
        h('p', { class: 'muted' }, t('subQueueHelp')),
        field(t('group'), group),
        field(t('parentQueue'), parent),
        field(t('comment'), comment),
        field(t('systemAddress'), address),
        field(t('displayName'), displayName),
        field(t('salutation'), salutation),
        field(t('signature'), signature),
        field(t('followUpPolicy'), followUp),
        field(t('unlockTimeoutMinutes'), unlock),
        field(t('firstResponseMinutes'), firstResponse),
        checkField(t('queueValid'), valid),
        h('h3', {}, t('autoResponses')),
        responses.map((r) => r.el),
      ],
      submitLabel: t('save'),
      wide: true,
      onSubmit: async () => {
        const queueName = creating ? name.value.trim() : q.name;
        const autoResponses = {};
        for (const response of responses) {
          const value = response.value();
          if (value) autoResponses[response.kind] = value;
        }
        const body = {
          group: group.value.trim(),
          parent: parent.value || null,
          comment: comment.value,
          system_address: address.value.trim(),
          display_name: displayName.value,
          salutation: salutation.value,
          signature: signature.value,
          follow_up_policy: followUp.value,
          unlock_timeout_minutes: Number(unlock.value || 0),
          first_response_minutes: Number(firstResponse.value || 0),
          auto_responses: autoResponses,
          valid: valid.checked,
        };
        await adminApi(`/queues/${enc(queueName)}`, { method: 'PUT', body });
        afterAdminChange(t('queueSaved', queueName));
      },
    });
  }

  // -------------------------------------------- templates (standard responses)

  function templatesScreen() {
    const rows = app.admin.templates.map((tpl) => h('tr', { dataset: { template: tpl.id } },
      h('td', {}, h('strong', {}, tpl.name), h('div', { class: 'muted' }, tpl.id)),
      h('td', {}, (tpl.queues || []).join(', ') || t('allQueues')),
      h('td', { class: 'excerpt' }, (tpl.body || '').slice(0, 160)),
      h('td', {}, h('div', { class: 'row-actions' },
        adminButton(t('edit'), `template:${tpl.id}:edit`, () => openTemplateDialog(tpl), { aria: `${t('edit')} ${tpl.name}` }),
        adminButton(t('delete'), `template:${tpl.id}:delete`, () => {
          if (!window.confirm(t('confirmDelete', tpl.name))) return;
          adminAction(() => adminApi(`/templates/${enc(tpl.id)}`, { method: 'DELETE' }), t('deleted'));
        }, { aria: `${t('delete')} ${tpl.name}` })))));
    return [
      h('p', { class: 'muted' }, t('templatesHelp')),
      adminToolbar(adminButton(`${t('newTemplate')}…`, 'new-template', () => openTemplateDialog(null), { primary: true })),
      adminTable(t('admin.templates'), [t('name'), t('queues'), t('text'), t('actions')], rows),
    ];
  }

  function slug(text) {
    const base = text.toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
    return base || `template-${Date.now().toString(36)}`;
  }

  function openTemplateDialog(template) {
    const creating = !template;
    const name = h('input', { name: 'name', required: true, maxlength: '200', value: template?.name || '',
      autocomplete: 'off', autofocus: true });
    const id = h('input', { name: 'id', maxlength: '200', autocomplete: 'off', placeholder: t('templateIdHelp') });
    const body = h('textarea', { name: 'body', rows: '10', required: true }, template?.body || '');
    const queueList = checkList(t('queues'), app.admin.queues.map((q) => q.name), template?.queues || [],
      t('templateQueuesHelp'));
    openDialog({
      title: creating ? t('newTemplate') : t('editTemplate', template.name),
      fields: [field(t('name'), name), creating ? field(t('templateId'), id) : null, field(t('text'), body), queueList.el],
      submitLabel: t('save'),
      wide: true,
      onSubmit: async () => {
        const templateId = creating ? id.value.trim() || slug(name.value) : template.id;
        const payload = { name: name.value.trim(), body: body.value, queues: queueList.value() };
        await adminApi(`/templates/${enc(templateId)}`, { method: 'PUT', body: payload });
        afterAdminChange(t('saved'));
      },
    });
  }

  // -------------------------------------------- postmaster filters

  function actionSummary(actions) {
    return Object.entries(actions || {})
      .filter(([, value]) => value !== false && value !== null && value !== '')
      .map(([key, value]) => (value === true ? key : `${key} = ${value}`)).join(' · ');
  }

  function filtersScreen() {
    const rows = app.admin.filters.map((f) => h('tr', { dataset: { filter: f.filter_id } },
      h('td', {}, String(f.position ?? 0)),
      h('td', {}, h('strong', {}, f.name)),
      h('td', {}, f.enabled === false ? t('disabled') : t('active')),
      h('td', { class: 'grants' }, Object.entries(f.match || {}).map(([key, pattern]) => `${key} ~ ${pattern}`)
        .join(' · ')),
      h('td', { class: 'grants' }, actionSummary(f.actions) || '—'),
      h('td', {}, h('div', { class: 'row-actions' },
        adminButton(t('edit'), `filter:${f.filter_id}:edit`, () => openFilterDialog(f), { aria: `${t('edit')} ${f.name}` }),
        adminButton(t('delete'), `filter:${f.filter_id}:delete`, () => {
          if (!window.confirm(t('confirmDelete', f.name))) return;
          adminAction(() => adminApi(`/filters/${enc(f.filter_id)}`, { method: 'DELETE' }), t('deleted'));
        }, { aria: `${t('delete')} ${f.name}` })))));
    return [
      h('p', { class: 'muted' }, t('filtersHelp')),
      adminToolbar(adminButton(`${t('newFilter')}…`, 'new-filter', () => openFilterDialog(null), { primary: true })),
      adminTable(t('admin.filters'), [t('position'), t('name'), t('status'), t('conditions'), t('filterActions'),
        t('actions')], rows),
    ];
  }

  function openFilterDialog(filter) {
    const creating = !filter;
    const actions = filter?.actions || {};
    const name = h('input', { name: 'name', required: true, maxlength: '200', value: filter?.name || '',
      autocomplete: 'off', autofocus: true });
    const position = numberInput('position', filter?.position ?? (app.admin.filters.length + 1) * 10);
    const enabled = checkbox(filter ? filter.enabled !== false : true, { name: 'enabled' });
    const conditions = pairEditor({
      legend: t('conditions'), keyLabel: t('header'), valueLabel: t('pattern'),
      entries: Object.entries(filter?.match || {}), keySuggestions: FILTER_FIELDS, addLabel: t('addCondition'),
    });
    if (creating) conditions.addRow();
    const queue = select('set_queue', [['', t('unchanged')], ...app.admin.queues.map((q) => [q.name, q.name])],
      actions.set_queue || '');
    const priority = select('set_priority', [['', t('unchanged')], ...PRIORITIES.map((p) => [p, priorityLabel(p)])],
      actions.set_priority ?? '');
    const title = h('input', { name: 'set_title', maxlength: '300', value: actions.set_title || '' });
    const flags = FILTER_FLAGS.map((flag) => [flag, checkbox(actions[flag], { name: flag })]);
    openDialog({
      title: creating ? t('newFilter') : t('editFilter', filter.name),
      fields: [
        field(t('name'), name),
        field(t('position'), position),
        checkField(t('filterEnabled'), enabled),
        h('p', { class: 'muted' }, t('conditionsHelp')),
        conditions.el,
        h('fieldset', { class: 'filter-actions' }, h('legend', {}, t('filterActions')),
          field(t('setQueue'), queue), field(t('setPriority'), priority), field(t('setTitle'), title),
          h('div', { class: 'checks' }, flags.map(([flag, box]) => checkField(t(`filter.${flag}`), box)))),
      ],
      submitLabel: t('save'),
      wide: true,
      onSubmit: async () => {
        const match = conditions.value();
        if (!Object.keys(match).length) throw new Error(t('needCondition'));
        const known = new Set(['set_queue', 'set_priority', 'set_title', ...FILTER_FLAGS]);
        const chosen = Object.fromEntries(Object.entries(actions).filter(([key]) => !known.has(key)));
        if (queue.value) chosen.set_queue = queue.value;
        if (priority.value) chosen.set_priority = Number(priority.value);
        if (title.value.trim()) chosen.set_title = title.value.trim();
        for (const [flag, box] of flags) if (box.checked) chosen[flag] = true;
        const body = { name: name.value.trim(), position: Number(position.value || 0), match, actions: chosen,
          enabled: enabled.checked };
        if (creating) await adminApi('/filters', { method: 'POST', body });
        else await adminApi(`/filters/${enc(filter.filter_id)}`, { method: 'PUT', body });
        afterAdminChange(t('saved'));
      },
    });
  }

  // -------------------------------------------- system addresses

  function addressesScreen() {
    const rows = app.admin.addresses.map((a) => h('tr', { dataset: { address: a.email } },
      h('td', {}, h('strong', {}, a.email)),
      h('td', {}, a.display_name || ''),
      h('td', {}, a.queue || ''),
      h('td', {}, Object.entries(a.language_queues || {}).map(([lang_, queue]) => `${lang_} → ${queue}`)
        .join(' · ') || '—'),
      h('td', {}, h('div', { class: 'row-actions' },
        adminButton(t('edit'), `address:${a.email}:edit`, () => openAddressDialog(a), { aria: `${t('edit')} ${a.email}` }),
        adminButton(t('delete'), `address:${a.email}:delete`, () => {
          if (!window.confirm(t('confirmDelete', a.email))) return;
          adminAction(() => adminApi(`/system-addresses/${enc(a.email)}`, { method: 'DELETE' }), t('deleted'));
        }, { aria: `${t('delete')} ${a.email}` })))));
    return [
      h('p', { class: 'muted' }, t('addressesHelp')),
      adminToolbar(adminButton(`${t('newAddress')}…`, 'new-address', () => openAddressDialog(null), { primary: true })),
      adminTable(t('admin.addresses'), [t('email'), t('displayName'), t('queue'), t('languageQueues'), t('actions')],
        rows),
    ];
  }

  function openAddressDialog(address) {
    const creating = !address;
    const names = app.admin.queues.map((q) => q.name);
    const email = h('input', { name: 'email', type: 'email', required: true, maxlength: '320', autocomplete: 'off',
      autofocus: true });
    const queue = select('queue', names.map((n) => [n, n]), address?.queue || names[0] || '', { required: true });
    const displayName = h('input', { name: 'display_name', maxlength: '200', value: address?.display_name || '',
      autofocus: !creating });
    const languages = pairEditor({
      legend: t('languageQueues'), keyLabel: t('languageCode'), valueLabel: t('queue'),
      entries: Object.entries(address?.language_queues || {}), keySuggestions: LANGUAGES, valueOptions: names,
      addLabel: t('addLanguageQueue'),
    });
    openDialog({
      title: creating ? t('newAddress') : t('editAddress', address.email),
      fields: [
        creating ? field(t('email'), email) : null,
        field(t('queue'), queue),
        field(t('displayName'), displayName),
        h('p', { class: 'muted' }, t('languageQueuesHelp')),
        languages.el,
      ],
      submitLabel: t('save'),
      wide: true,
      onSubmit: async () => {
        const target = creating ? email.value.trim().toLowerCase() : address.email;
        const body = { queue: queue.value, display_name: displayName.value, language_queues: languages.value() };
        await adminApi(`/system-addresses/${enc(target)}`, { method: 'PUT', body });
        afterAdminChange(t('saved'));
      },
    });
  }

  // ------------------------------------------------------------------ live updates

  function startLive() {
    stopLive();
    if (!('EventSource' in window)) {
      startPolling();
      return;
    }
    const source = new EventSource('/api/events');
    app.live.source = source;
    source.addEventListener('open', () => {
      stopPolling();
      setLiveStatus('live');
    });
    source.addEventListener('message', (message) => onLiveMessage(message.data));
    source.addEventListener('error', () => {
      startPolling();
      if (source.readyState === EventSource.CLOSED) {
        app.live.retry = setTimeout(startLive, SSE_RETRY_MS);
      }
    });
  }

  function stopLive() {
    app.live.source?.close();
    app.live.source = null;
    clearTimeout(app.live.retry);
    stopPolling();
    setLiveStatus('');
  }

  function startPolling() {
    setLiveStatus('polling');
    if (app.live.poll) return;
    app.live.poll = setInterval(() => {
      if (document.hidden || $('#action-dialog').open) return;
      scheduleRefresh('sidebar');
      refreshCurrentView();
    }, POLL_MS);
  }

  function stopPolling() {
    clearInterval(app.live.poll);
    app.live.poll = null;
  }

  function setLiveStatus(mode) {
    const status = $('#live-status');
    status.className = `live-status ${mode ? `live-status--${mode}` : ''}`;
    status.textContent = mode ? t(mode) : '';
  }

  /** Accepts a flat summary or a full event envelope. */
  function normaliseEvent(raw) {
    const data = raw.data && typeof raw.data === 'object' ? raw.data : {};
    return {
      type: raw.type || '',
      number: String(raw.ticket_number ?? data.ticket_number ?? ''),
      id: raw.ticket_id ?? raw.stream_id ?? data.ticket_id ?? '',
      actor: raw.agent ?? data.agent ?? (typeof raw.actor === 'string' ? raw.actor : ''),
    };
  }

  function onLiveMessage(text) {
    let event;
    try {
      event = normaliseEvent(JSON.parse(text));
    } catch {
      return;
    }
    scheduleRefresh('sidebar');
    const route = app.route;
    if (route?.view === 'zoom' && isZoomed(event)) {
      scheduleRefresh('zoom');
      if (event.type === 'TicketLocked' && event.actor && event.actor !== app.me?.username) {
        notify(t('lockedByColleague', route.number, event.actor), 'warn');
      }
    }
    if (route?.view === 'list' && (LIST_REFRESHING_EVENTS.has(event.type) || isListed(event))) {
      scheduleRefresh('list');
    }
  }

  function isZoomed(event) {
    const ticket = app.zoom;
    return Boolean(ticket) && (event.number === ticketNo(ticket) || (event.id && event.id === ticket.ticket_id));
  }

  function isListed(event) {
    return (app.list?.items || []).some((item) =>
      ticketNo(item) === event.number || (event.id && event.id === item.ticket_id));
  }

  function scheduleRefresh(kind) {
    const timers = app.live.timers;
    if (timers.has(kind)) return; // one refresh is already due: a burst of events never postpones it
    timers.set(kind, setTimeout(() => {
      timers.delete(kind);
      if (!app.me) return;
      if (kind === 'sidebar') {
        loadQueues();
        loadCounters();
      } else if (kind === 'list' && app.route?.view === 'list') loadList();
      else if (kind === 'zoom' && app.route?.view === 'zoom') loadZoom();
    }, REFRESH_DEBOUNCE_MS));
  }

  // ------------------------------------------------------------------ wiring

  function onKeyDown(event) {
    if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest('input, textarea, select, dialog, [contenteditable]')) return;
    if ($('#app-view').hidden) return;
    event.preventDefault();
    $('#search-input').focus();
  }

  function onSearch(event) {
    event.preventDefault();
    const q = $('#search-input').value.trim();
    if (q) location.hash = `#/search?q=${enc(q)}`;
  }

  function setLanguage(code) {
    lang = code;
    localStorage.setItem('firstline.lang', lang);
    applyStaticTranslations();
    if (app.me) renderRoute();
  }

  /** The header's language menu changes the saved preference too (when there is a session). */
  async function onLanguageChange(event) {
    setLanguage(event.target.value);
    if (!app.me) return;
    try {
      app.prefs = await api('/api/me/preferences', { method: 'PUT', body: { language: lang } });
    } catch (error) {
      if (error.status !== 401 && error.status !== 404) notify(error.message);
    }
  }

  function bindStaticHandlers() {
    $('#login-form').addEventListener('submit', onLogin);
    $('#logout-button').addEventListener('click', onLogout);
    $('#search-form').addEventListener('submit', onSearch);
    $('#language-select').addEventListener('change', onLanguageChange);
    $('#action-form').addEventListener('submit', onDialogSubmit);
    $('#action-cancel').addEventListener('click', () => $('#action-dialog').close());
    window.addEventListener('hashchange', () => {
      if (app.me) onHashChange();
    });
    document.addEventListener('keydown', onKeyDown);
    setInterval(tickCountdowns, COUNTDOWN_MS);
  }

  boot();
})();

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
    seq: { list: 0, zoom: 0, history: 0 },
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
    for (const view of ['list', 'zoom', 'history']) $(`#${view}-view`).hidden = view !== name;
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
    if (route.view === 'list') {
      app.lastListHash = location.hash || '#/queues';
      showView('list');
      loadList();
    } else if (route.view === 'zoom') {
      showView('zoom');
      loadZoom();
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
    updateCounters(app.me.counters);
    app.route = parseRoute();
    app.focusOnRender = true;
    renderRoute();
    loadQueues();
    startLive();
  }

  function onSessionLost() {
    if (!app.me) return;
    app.me = null;
    app.moveTargets = null;
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
    const total = app.queues.reduce((sum, q) => sum + openCount(q), 0);
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

  const COLUMNS = [
    { key: 'number', label: 'ticketNumber', cell: (item) => h('a', { href: ticketHref(ticketNo(item)),
      dataset: { focusKey: `${ticketNo(item)}:link` } }, ticketNo(item)) },
    { key: 'created', label: 'age', cell: (item) => fmtDuration(ageSeconds(item)) },
    { key: 'state', label: 'state', cell: (item) => stateLabel(item.state) },
    { key: 'locked', label: 'locked', cell: lockText, optional: true },
    { key: 'owner', label: 'owner', cell: (item) => item.owner || '', optional: true },
    { key: 'queue', label: 'queue', cell: (item) => item.queue || '', optional: true },
    { key: 'priority', label: 'priority', cell: (item) => priorityChip(item.priority) },
    { key: 'title', label: 'title', cell: titleCell },
  ];

  function titleCell(item) {
    return [
      h('a', { href: ticketHref(ticketNo(item)), class: 'title-link' }, item.title || '—'),
      item.snippet ? h('div', { class: 'snippet muted' }, item.snippet) : null,
    ];
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
      sort: p.get('sort') || 'created',
      order: p.get('order') || 'asc',
    };
    if (route.kind === 'queue') params.queue = route.queue;
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
    const sort = route.params.get('sort') || 'created';
    const order = route.params.get('order') || 'asc';
    const allSelected = items.length > 0 && items.every((item) => app.selected.has(ticketNo(item)));
    const header = h('tr', {},
      h('th', { scope: 'col', class: 'col-check' }, h('input', {
        type: 'checkbox', 'aria-label': t('selectAll'), checked: allSelected,
        dataset: { focusKey: 'select-all' }, onchange: (e) => selectAll(items, e.target.checked),
      })),
      COLUMNS.map((col) => columnHeader(col, route, sortable && sort === col.key ? order : null, sortable)),
      h('th', { scope: 'col' }, t('actions')));
    const rows = items.length ? items.map(ticketRow)
      : [h('tr', {}, h('td', { colspan: COLUMNS.length + 2, class: 'empty' }, t('noTickets')))];
    return h('table', { class: 'tickets', 'aria-labelledby': 'list-title' },
      h('thead', {}, header), h('tbody', {}, rows));
  }

  const columnClass = (col) => `col-${col.key}${col.optional ? ' col-optional' : ''}`;

  function columnHeader(col, route, order, sortable) {
    const cls = columnClass(col);
    if (!sortable) return h('th', { scope: 'col', class: cls }, t(col.label));
    const ariaSort = order === 'asc' ? 'ascending' : order === 'desc' ? 'descending' : 'none';
    const next = order === 'asc' ? 'desc' : 'asc';
    const arrow = order === 'asc' ? ' ▲' : order === 'desc' ? ' ▼' : '';
    return h('th', { scope: 'col', class: cls, 'aria-sort': ariaSort },
      button([t(col.label), h('span', { 'aria-hidden': 'true' }, arrow)], () => {
        location.hash = routeHash(route, { sort: col.key, order: next, page: '' });
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
      h('ol', { class: 'articles' }, articles.map(renderArticle)));
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

  function renderArticle(article) {
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
      mailTools(article)));
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
    if (!article.mail_id || !file.part) return h('span', {}, name);
    return h('a', { href: `/api/mails/${enc(article.mail_id)}/parts/${enc(file.part)}`, download: name }, name);
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
    $('#action-fields').replaceChildren(...fields);
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
    openDialog({
      title: t('answerTitle', number),
      fields: [field(t('template'), chooser), field(t('text'), body)],
      submitLabel: t('send'),
      wide: true,
      onSubmit: async (form) => {
        await postAction(number, 'answer', { body: form.get('body'), template: form.get('template') || undefined });
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
    clearTimeout(timers.get(kind));
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

  function onLanguageChange(event) {
    lang = event.target.value;
    localStorage.setItem('firstline.lang', lang);
    applyStaticTranslations();
    if (app.me) renderRoute();
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
  }

  boot();
})();

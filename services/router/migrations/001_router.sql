-- The router's own tables. The event store (shared) holds the configuration's history
-- (FilterChanged, SystemAddressChanged); the tables here are current state and projections.

-- One decision per mail: what GET /mails/{mail_id} answers, and the guard against routing a
-- redelivered mail twice (even when it comes back with another event id).
create table routing_decisions (
    mail_id       text primary key,
    event_id      uuid        not null,
    action        text        not null,
    queue         text        not null,
    priority      integer     not null,
    ticket_number text,
    spam          boolean     not null,
    spam_score    double precision not null,
    model_version integer,
    reasons       jsonb       not null,
    decided_at    timestamptz not null default now()
);

-- Versions of what every replica keeps in memory: 'config' (filters, system addresses) and
-- 'classifier'. Bumped in the transaction that changes them; a replica reloads when they move.
-- Bumping the classifier row also serialises training, so log versions commit in order.
create table router_versions (
    name    text primary key,
    version bigint not null default 0
);
insert into router_versions (name) values ('config'), ('classifier');

-- Current configuration (the history is in the event store).
create table router_filters (
    filter_id  text primary key,
    name       text        not null,
    position   integer     not null,
    match      jsonb       not null,
    actions    jsonb       not null,
    enabled    boolean     not null,
    version    integer     not null,
    changed_by text        not null,
    changed_at timestamptz not null default now()
);

create table router_system_addresses (
    email           text primary key,
    queue           text        not null,
    display_name    text        not null default '',
    language_queues jsonb       not null default '{}',
    version         integer     not null,
    changed_by      text        not null,
    changed_at      timestamptz not null default now()
);

-- The ticket index, projected from ticket.events.
create table router_tickets (
    ticket_id             text primary key,
    number                text        not null unique,
    queue                 text        not null,
    state                 text        not null,
    merged_into_ticket_id text,
    merged_into_number    text,
    first_mail_id         text,
    created_at            timestamptz not null
);

create table router_participants (
    ticket_id text not null,
    email     text not null,
    primary key (ticket_id, email)
);

-- Message-ids (without angle brackets) of mail received into and answers sent from tickets.
create table router_message_ids (
    message_id text primary key,
    ticket_id  text not null
);

create table router_queues (
    name             text primary key,
    follow_up_policy text    not null,
    valid            boolean not null
);

-- Tokens of the first mail of recent new tickets: what an agent's move or spam mark labels.
-- Bounded by age and count (housekeeping); trained_as is the label the mail now counts under.
create table learning_mails (
    mail_id    text primary key,
    ticket_id  text,
    tokens     text[]      not null,
    trained_as text,
    routed_at  timestamptz not null default now()
);
create index learning_mails_ticket on learning_mails (ticket_id);
create index learning_mails_age on learning_mails (routed_at);

-- The naive Bayes classifier's counts; every replica loads them and follows classifier_log.
create table classifier_tokens (
    token text    not null,
    label text    not null,
    count integer not null check (count > 0),
    primary key (token, label)
);

create table classifier_docs (
    label text primary key,
    docs  integer not null check (docs >= 0)
);

-- One row per change of the counts, at the version it made. tokens is null for a bulk change
-- (a corpus import): replicas then reload the whole table instead of applying a delta.
create table classifier_log (
    version     bigint primary key,
    label       text,
    delta       smallint,
    tokens      text[],
    mail_id     text,
    reason      text        not null,
    recorded_at timestamptz not null default now()
);

-- The tickets service's own tables. Everything below "read models" is derived from the event
-- store by services.tickets.projections and can be rebuilt from it (services.tickets.rebuild);
-- ticket_counters and templates are not event-sourced.

-- One counter per day for DateChecksum ticket numbers (unique under concurrency and restarts).
create table ticket_counters (
    day date   primary key,
    n   bigint not null
);

-- Answer templates (the response text only; notify adds salutation and signature).
create table templates (
    id         text        primary key,
    name       text        not null,
    body       text        not null,
    queues     text[]      not null default '{}',  -- empty: offered in every queue
    updated_at timestamptz not null default now()
);
create index templates_queues on templates using gin (queues);

-- ------------------------------------------------------------------------- read models

-- The ticket list: one row per ticket, the fold of its stream without articles. ``doc`` is that
-- fold (services.tickets.state.Ticket as JSON); the columns are copies of it for filtering.
create table ticket_list (
    ticket_id      text        primary key,
    number         text        not null unique,
    title          text        not null,
    state          text        not null,
    locked_by      text,
    owner          text,
    responsible    text,
    queue          text        not null,
    priority       integer     not null,
    customer_email text,
    customer_id    text,
    created_at     timestamptz not null,
    changed_at     timestamptz not null,
    pending_until  timestamptz,
    due_at         timestamptz,  -- when a timer must look at it (pending time not acted on)
    watchers       text[]      not null default '{}',
    merged_into    text,         -- the number of the ticket it was merged into
    spam           boolean     not null default false,
    version        integer     not null,
    doc            jsonb       not null,
    title_tsv      tsvector generated always as (to_tsvector('simple', number || ' ' || title)) stored
);
-- The list's usual orders within a queue (scanned backwards for newest first). A list over
-- several queues merges each queue's first page (store._list_per_queue); there is deliberately
-- no index on created_at alone: the planner would walk it through queues the agent can't see.
create index ticket_list_queue_created on ticket_list (queue, created_at, ticket_id);
create index ticket_list_queue_changed on ticket_list (queue, changed_at, ticket_id);
create index ticket_list_queue_number on ticket_list (queue, number, ticket_id);
create index ticket_list_queue_state on ticket_list (queue, state, created_at, ticket_id);
create index ticket_list_owner on ticket_list (owner) where owner is not null;
create index ticket_list_locked on ticket_list (locked_by) where locked_by is not null;
create index ticket_list_customer on ticket_list (customer_email);
create index ticket_list_due on ticket_list (due_at) where due_at is not null;
create index ticket_list_watchers on ticket_list using gin (watchers);
create index ticket_list_title_tsv on ticket_list using gin (title_tsv);

-- Every article with its text (zoom, search). ``stream_version`` orders articles of one ticket.
create table articles (
    article_id          text        primary key,
    ticket_id           text        not null,
    stream_version      integer     not null,
    kind                text        not null,  -- email, phone, note, answer
    channel             text        not null,  -- email, phone, internal
    sender_type         text        not null,
    visible_to_customer boolean     not null,
    from_addr           text,
    to_addrs            text[]      not null default '{}',
    cc_addrs            text[]      not null default '{}',
    recipients          text        not null default '',  -- to and cc as one text, for search
    subject             text        not null default '',
    body                text        not null default '',
    body_html           text,
    created_at          timestamptz not null,
    created_by          text        not null,
    mail_id             text,
    message_id          text,
    in_reply_to         text,
    attachments         jsonb       not null default '[]',
    delivery            text,
    delivery_detail     text,
    tsv tsvector generated always as (
        to_tsvector('simple', left(subject || ' ' || coalesce(from_addr, '') || ' ' || recipients || ' ' || body,
            200000))
    ) stored
);
create index articles_ticket on articles (ticket_id, created_at, stream_version);
create index articles_tsv on articles using gin (tsv);

-- Where each incoming mail went.
create table mail_index (
    mail_id    text primary key,
    ticket_id  text not null,
    article_id text not null
);

-- Ticket counts per (queue, state, locked) as insert-only deltas: no hot rows for concurrent
-- commands; the sum is the count. services.tickets.store.compact_counts folds them now and then.
create table queue_counts (
    queue  text    not null,
    state  text    not null,
    locked boolean not null,
    n      integer not null
);
create index queue_counts_key on queue_counts (queue, state, locked);

-- Queues, from the ``queue-<name>`` streams (QueueConfigured).
create table queues (
    name        text    primary key,
    "group"     text    not null,
    parent      text,
    valid       boolean not null,
    config      jsonb   not null,
    version     integer not null
);

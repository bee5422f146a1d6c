-- Crypto-shredding (services.tickets.privacy) and the admin-started rebuild. Not read models:
-- nothing here is derived from the log (the keys are what makes part of the log readable).

-- One data subject per customer: a random AES-256 key. Erasure sets ``key`` (and the email
-- digest that finds it) to null; every event encrypted under ``kid`` is then unreadable, in the
-- database, its backups and any replay, while the events and their hash chain stay as written.
create table customer_keys (
    kid          text        primary key,
    email_digest text        unique,        -- sha256 of the lower-cased address; null once erased
    key          bytea,                     -- null once erased
    created_at   timestamptz not null default now(),
    erased_at    timestamptz
);

-- The subjects whose keys a ticket's events are encrypted under (usually one: its customer's;
-- another is added when a ticket of an erased customer gets new personal data).
create table ticket_keys (
    ticket_id  text        not null,
    kid        text        not null references customer_keys (kid),
    created_at timestamptz not null default clock_timestamp(),
    primary key (ticket_id, kid)
);
create index ticket_keys_kid on ticket_keys (kid);

-- Rebuilds started through the API (POST /admin/rebuild): one row each, updated as it runs.
create table rebuild_jobs (
    job_id      text        primary key,
    state       text        not null,  -- running, done, failed
    swap        boolean     not null,
    schema_name text,
    events      bigint      not null default 0,
    report      jsonb,
    error       text,
    started_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    finished_at timestamptz
);

-- Audit navigation: "which events did this one cause" and "which tickets were ever in this
-- queue" (time travel of a queue) without scanning the log.
create index events_causation on events (causation_id) where causation_id is not null;
create index events_queue_entries on events ((coalesce(data ->> 'to_queue', data ->> 'queue')), occurred_at)
    where type in ('TicketCreated', 'TicketMoved');

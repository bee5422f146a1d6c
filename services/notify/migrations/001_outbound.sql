-- Notify's tables: queue mail settings (a copy of QueueConfigured), the outbound log, and the
-- auto responses it decided not to send.

create table queue_mail_settings (
    queue           text        primary key,
    settings        jsonb       not null,  -- services.notify.queue_settings.QueueMailSettings
    valid           boolean     not null default true,
    source_event_id uuid        not null,
    configured_at   timestamptz not null,  -- the event's occurred_at: an older event never wins
    updated_at      timestamptz not null default now()
);

-- One row per mail to send, keyed by the event that caused it and what for ('answer',
-- 'auto_reply', 'notice.<agent>'): a redelivered event finds its row and sends nothing more.
-- The message is rendered once, at insert; every attempt sends these bytes.
--
-- due_at is when a worker should next look at the row: for 'pending' the next attempt, for
-- 'sending' the end of the worker's lease (a row still 'sending' after it was left behind by a
-- worker that died, and is sent again with the same bytes and Message-ID).
create table outbound (
    id              bigserial   primary key,
    cause_event_id  uuid        not null,
    purpose         text        not null,
    ticket_id       text        not null,
    article_id      text,
    kind            text,
    correlation_id  text        not null,
    envelope_from   text        not null,  -- '' is the null reverse-path
    recipients      text[]      not null,
    recipient_key   text,                  -- canonical recipient of an auto reply (daily limit)
    message_id      text        not null,
    message         bytea       not null,
    smtputf8        boolean     not null default false,
    requested_at    timestamptz not null,  -- the causing event's occurred_at
    state           text        not null default 'pending'
                    check (state in ('pending', 'sending', 'sent', 'failed')),
    attempts        integer     not null default 0,
    due_at          timestamptz not null default now(),
    claimed_at      timestamptz,
    claim_token     uuid,
    last_error      text,
    last_error_kind text        check (last_error_kind in ('retry', 'permanent')),
    smtp_code       integer,
    relay_response  text,
    refused         jsonb       not null default '{}',
    created_at      timestamptz not null default now(),
    finished_at     timestamptz,
    unique (cause_event_id, purpose)
);
create index outbound_due on outbound (due_at) where state in ('pending', 'sending');
create index outbound_ticket on outbound (ticket_id, id);
create index outbound_auto_replies on outbound (recipient_key, requested_at) where purpose = 'auto_reply';

-- Wake the sender as soon as rows commit (it polls as well, so a lost notification only delays).
create function outbound_inserted() returns trigger language plpgsql as $$
begin
    perform pg_notify('notify_outbound', '');
    return null;
end $$;
create trigger outbound_wake after insert on outbound
    for each statement execute function outbound_inserted();

-- Auto responses not sent, and why (loop protection, daily limit, disabled, ...).
create table auto_reply_suppressions (
    cause_event_id uuid        primary key,
    ticket_id      text        not null,
    kind           text        not null,
    recipient      text        not null,
    reason         text        not null,
    requested_at   timestamptz not null,
    created_at     timestamptz not null default now()
);
create index auto_reply_suppressions_ticket on auto_reply_suppressions (ticket_id);

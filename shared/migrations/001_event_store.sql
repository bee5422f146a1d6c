-- The append-only event log. One row per event; (stream_id, stream_version) is the
-- optimistic-concurrency guard. txid is the writing transaction's id: readers of the whole
-- log page by (txid, global_position) below the oldest still-running transaction, so an
-- event whose transaction commits late is never skipped.
create table events (
    global_position bigserial primary key,
    txid            bigint      not null default (pg_current_xact_id()::text::bigint),
    event_id        uuid        not null unique,
    stream_id       text        not null,
    stream_version  integer     not null,
    type            text        not null,
    schema_version  integer     not null,
    occurred_at     timestamptz not null,
    recorded_at     timestamptz not null default now(),
    correlation_id  text        not null,
    causation_id    text,
    actor           text        not null,
    data            jsonb       not null,
    prev_hash       text        not null,
    hash            text        not null,
    unique (stream_id, stream_version)
);
create index events_commit_order on events (txid, global_position);

-- Events are never updated or deleted by the application.
create function events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'events are append-only (% on stream %)', tg_op, old.stream_id;
end $$;
create trigger events_no_update before update or delete on events
    for each row when (current_setting('firstline.allow_rewrite', true) is distinct from 'on')
    execute function events_append_only();

create table snapshots (
    stream_id      text primary key,
    stream_version integer     not null,
    state          jsonb       not null,
    taken_at       timestamptz not null default now()
);

-- Transactional outbox: written in the same transaction as the events it announces.
create table outbox (
    id           bigserial primary key,
    topic        text        not null,
    key          text        not null,
    event_id     uuid        not null,
    payload      bytea       not null,
    headers      jsonb       not null default '{}',
    created_at   timestamptz not null default now(),
    published_at timestamptz
);
create index outbox_unpublished on outbox (id) where published_at is null;

-- Highest offset the relay saw acknowledged per partition: if the broker later reports a
-- lower end offset, it has lost data and the relay republishes.
create table relay_offsets (
    topic     text    not null,
    partition integer not null,
    "offset"  bigint  not null,
    primary key (topic, partition)
);

-- Idempotent consumers: a message id is recorded in the same transaction as its effects.
create table processed_messages (
    consumer     text        not null,
    message_id   text        not null,
    processed_at timestamptz not null default now(),
    primary key (consumer, message_id)
);

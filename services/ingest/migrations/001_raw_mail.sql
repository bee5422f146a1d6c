-- Every accepted byte, exactly as received, deduplicated by content hash.
create table raw_mails (
    mail_id       text primary key,
    sha256        text        not null unique,
    size          integer     not null,
    raw           bytea       not null,
    source        text        not null,
    envelope_from text,
    envelope_to   text[]      not null default '{}',
    received_at   timestamptz not null default now(),
    flags         jsonb       not null default '{}',
    defects       jsonb       not null default '[]'
);
create index raw_mails_received on raw_mails (received_at);

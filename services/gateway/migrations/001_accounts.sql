-- Agents, groups, roles and sessions: the gateway's own state. Permission kinds are the seven
-- of services/gateway/permissions.py; a grant on a group named 'queue:<name>' is a per-queue
-- grant (what POST /api/admin/agents {permissions: {queue: [...]}} stores).

create table agents (
    id            bigserial   primary key,
    username      text        not null,
    password_hash text        not null,
    full_name     text        not null default '',
    email         text,
    is_admin      boolean     not null default false,
    capabilities  text[]      not null default '{}',  -- global rights outside queues, e.g. 'audit'
    valid         boolean     not null default true,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create unique index agents_username on agents (lower(username));

-- The catalogue of groups: created by admins, by QueueConfigured (a queue's group), or on the
-- fly for per-queue groups.
create table groups (
    name       text        primary key,
    comment    text        not null default '',
    per_queue  boolean     not null default false,
    created_at timestamptz not null default now()
);

create table agent_groups (
    agent_id    bigint not null references agents (id) on delete cascade,
    group_name  text   not null references groups (name) on delete cascade,
    permissions text[] not null,
    primary key (agent_id, group_name)
);

create table roles (
    name       text        primary key,
    comment    text        not null default '',
    created_at timestamptz not null default now()
);

create table role_groups (
    role_name   text   not null references roles (name) on delete cascade,
    group_name  text   not null references groups (name) on delete cascade,
    permissions text[] not null,
    primary key (role_name, group_name)
);

create table agent_roles (
    agent_id  bigint not null references agents (id) on delete cascade,
    role_name text   not null references roles (name) on delete cascade,
    primary key (agent_id, role_name)
);

-- Only the SHA-256 digest of a session token is stored; deleting the row revokes the session.
create table sessions (
    token_digest text        primary key,
    agent_id     bigint      not null references agents (id) on delete cascade,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    last_seen_at timestamptz not null default now(),
    ip           text,
    user_agent   text
);
create index sessions_agent on sessions (agent_id);
create index sessions_expiry on sessions (expires_at);

-- Every admin change, with who did it. Append-only.
create table audit_log (
    id             bigserial   primary key,
    at             timestamptz not null default now(),
    actor          text        not null,
    action         text        not null,
    target         text        not null,
    detail         jsonb       not null default '{}',
    correlation_id text
);
create function audit_log_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_log is append-only';
end $$;
create trigger audit_log_no_update before update or delete on audit_log
    for each row execute function audit_log_append_only();

-- Secrets shared by every replica (the CSRF key when GATEWAY_SECRET is not set).
create table gateway_secrets (
    name       text        primary key,
    value      bytea       not null,
    created_at timestamptz not null default now()
);

-- Projections of ticket.events the permission checks need: which group each queue is in
-- (QueueConfigured) and which queue each ticket is in (TicketCreated, TicketMoved).
create table queue_directory (
    name       text        primary key,
    group_name text        not null default '',  -- '' until the queue's QueueConfigured arrives
    parent     text,
    valid      boolean     not null default true,
    updated_at timestamptz not null default now()
);

create table ticket_directory (
    ticket_id     text        primary key,
    ticket_number text        not null,
    queue         text        not null,
    updated_at    timestamptz not null default now()
);
create index ticket_directory_number on ticket_directory (ticket_number);

-- Agent notices: notify's copy of the agent directory (AgentProfileChanged on agent.directory)
-- and of the ticket fields a notice needs (folded from ticket.events).

create table agents (
    username        text        primary key,
    email           text,
    name            text        not null default '',
    valid           boolean     not null default true,
    language        text        not null default 'en',
    notifications   text[]      not null default '{}',  -- the notice kinds the agent wants
    my_queues       text[]      not null default '{}',
    readable_queues text[]      not null default '{}',
    revision        bigint      not null,               -- the envelope's stream_version: the last one wins
    source_event_id uuid        not null,
    updated_at      timestamptz not null default now()
);
create index agents_lower_username on agents (lower(username));
create index agents_my_queues on agents using gin (my_queues);

create table notice_tickets (
    ticket_id     text        primary key,
    ticket_number text        not null,
    title         text        not null default '',
    queue         text        not null,
    state         text        not null default 'new',
    priority      integer     not null default 3,
    owner         text,
    lock_holder   text,
    customer      text,
    spam          boolean     not null default false,
    articles      integer     not null default 0,
    updated_at    timestamptz not null default now()
);

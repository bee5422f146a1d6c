-- Agent preferences (GET/PUT /api/me/preferences) and the agent directory published on
-- agent.directory (AgentProfileChanged; services/gateway/profiles.py).

-- A missing row, or a kind missing from notifications, means the default.
create table agent_preferences (
    agent_id      bigint      primary key references agents (id) on delete cascade,
    language      text        not null default 'en',
    notifications jsonb       not null default '{}',  -- kind -> bool
    my_queues     text[]      not null default '{}',
    updated_at    timestamptz not null default now()
);

-- The last profile published per agent; revision is the envelope's stream_version.
create table agent_directory_published (
    username     text        primary key,
    profile      jsonb       not null,
    revision     bigint      not null,
    published_at timestamptz not null default now()
);

-- Every change to what a profile is computed from bumps generation (triggers below); the
-- publisher recomputes when generation is ahead of what it has published. -1: never published.
create table agent_directory_state (
    id                   boolean primary key default true check (id),
    generation           bigint  not null default 0,
    published_generation bigint  not null default -1
);
insert into agent_directory_state default values;

create function agent_directory_touched() returns trigger language plpgsql as $$
begin
    update agent_directory_state set generation = generation + 1;
    return null;
end $$;

create trigger agents_directory after insert or delete or update of username, full_name, email, is_admin, valid
    on agents for each statement execute function agent_directory_touched();
create trigger agent_groups_directory after insert or update or delete on agent_groups
    for each statement execute function agent_directory_touched();
create trigger agent_roles_directory after insert or update or delete on agent_roles
    for each statement execute function agent_directory_touched();
create trigger role_groups_directory after insert or update or delete on role_groups
    for each statement execute function agent_directory_touched();
create trigger queue_directory_directory after insert or update or delete on queue_directory
    for each row execute function agent_directory_touched();
create trigger agent_preferences_directory after insert or update or delete on agent_preferences
    for each statement execute function agent_directory_touched();

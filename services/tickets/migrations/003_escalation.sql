-- Escalation (issue 5): copies of the ticket fold's escalation clocks, for the list, its
-- ``sort=escalation`` and the timer. Rows written before this migration have nulls here until
-- their ticket next changes (or a rebuild); their streams carry no escalation times anyway.
alter table ticket_list
    add column escalation_due_at   timestamptz,            -- the earliest running clock's due time
    add column escalation_kind     text,                   -- first_response, update or solution
    add column escalation_next_at  timestamptz,            -- when the timer must next act (warning or breach)
    add column escalation_settings text not null default '';  -- the queue times it runs on ('' = none)

-- The list sorted by escalation within a queue (nulls last ascending, as the list asks).
create index ticket_list_queue_escalation on ticket_list (queue, escalation_due_at, ticket_id);
-- The timer's query for warnings and breaches due.
create index ticket_list_escalation_next on ticket_list (escalation_next_at) where escalation_next_at is not null;

-- The relay's witness per partition is a record it saw acknowledged: its offset and event id.
-- Comparing the event id (not only the offset) also catches a topic that was recreated and
-- refilled past that offset.
alter table relay_offsets add column event_id text not null default '';

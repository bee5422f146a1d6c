"""The tickets service end to end: Kafka in (ticket.routed, delivery.events), Kafka out
(ticket.events), read models, history and time travel, audit, rebuild, timers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.tickets import store
from services.tickets.projections import Projector
from services.tickets.rebuild import digest, rebuild
from services.tickets.timers import tick
from shared.envelope import Envelope, make_envelope
from shared.events import (
    TOPIC_DELIVERY_EVENTS,
    TOPIC_TICKET_EVENTS,
    AnswerDelivered,
    AnswerSent,
    AutoReplyRequested,
)
from shared.eventstore import EventStore
from shared.settings import ServiceSettings
from tests.conftest import eventually

from .service_kit import (
    ALICE,
    BOB,
    deliver,
    new_ticket,
    publish,
    publish_routed,
    read_topic,
    routed_envelope,
    running,
    tickets_of,
    tickets_settings,
)

pytestmark = pytest.mark.timeout(240)


async def test_routed_mail_through_kafka(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        first = routed_envelope("mail-1", queue="Raw", message_id="<m1@example.org>")
        await publish_routed(settings, first)

        async def ticketed(mail_id: str) -> dict | None:
            found = await client.get(f"/mails/{mail_id}")
            return found.json() if found.status_code == 200 else None

        where = await eventually(lambda: ticketed("mail-1"))
        number = where["ticket_number"]
        zoom = (await client.get(f"/tickets/{number}")).json()
        assert (zoom["title"], zoom["queue"], zoom["state"], zoom["customer_email"]) == (
            "My account is blocked",
            "Raw",
            "new",
            "carol@example.org",
        )
        assert [(a["mail_id"], a["body"]) for a in zoom["articles"]] == [("mail-1", "Hello, please help.")]
        fields_only = (await client.get(f"/tickets/{number}", params={"articles": "false"})).json()
        assert "articles" not in fields_only and fields_only == {k: v for k, v in zoom.items() if k != "articles"}

        same_mail_again = routed_envelope("mail-1", queue="Raw", message_id="<m1@example.org>")
        follow_up = routed_envelope(
            "mail-2", action="follow_up", ticket_number=number, message_id="<m2@example.org>", subject="Re: blocked"
        )
        await publish(settings, "ticket.routed", [first, same_mail_again, follow_up], key="mail-1")
        await eventually(lambda: ticketed("mail-2"))
        listed = (await client.get("/tickets")).json()
        assert listed["total"] == 1 and listed["page"] == 1 and listed["page_size"] == 25
        zoom = (await client.get(f"/tickets/{number}")).json()
        assert [a["mail_id"] for a in zoom["articles"]] == ["mail-1", "mail-2"]

        answered = await client.post(f"/tickets/{number}/answer", json={"body": "Done."}, headers=ALICE)
        answer_id = answered.json()["ticket"]["articles"][-1]["article_id"]
        published = await read_topic(settings, TOPIC_TICKET_EVENTS, expected=8)
        types = [e.type for _, e in published]
        assert types[:3] == ["TicketCreated", "ArticleAdded", "AutoReplyRequested"]
        assert {key for key, _ in published} == {zoom["ticket_id"]}
        created = published[0][1]
        assert created.correlation_id == first.correlation_id and created.causation_id == first.event_id
        assert created.actor == "system:router"
        auto_reply = published[2][1].payload()
        assert isinstance(auto_reply, AutoReplyRequested) and auto_reply.references == ["<m1@example.org>"]
        sent = next(e.payload() for _, e in published if e.type == "AnswerSent")
        assert isinstance(sent, AnswerSent)
        assert sent.in_reply_to == "<m2@example.org>" and sent.references[-1] == "<m2@example.org>"
        assert sent.subject.startswith(f"[Ticket#{number}]") and sent.to == ["carol@example.org"]

        delivered = AnswerDelivered(
            ticket_id=zoom["ticket_id"], article_id=answer_id, message_id=sent.message_id, relay_response="250 OK"
        )
        await publish(
            settings,
            TOPIC_DELIVERY_EVENTS,
            [make_envelope(delivered, stream_id=zoom["ticket_id"], actor="system:notify")],
        )

        async def delivery() -> str | None:
            articles = (await client.get(f"/tickets/{number}")).json()["articles"]
            return articles[-1]["delivery"] if articles[-1]["delivery"] == "delivered" else None

        await eventually(delivery)
        history = (await client.get(f"/tickets/{number}/history")).json()
        assert history["events"][-1]["description"] == f"Answer {sent.message_id} delivered (250 OK)"


async def test_history_time_travel_and_audit(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        await client.put("/queues/Info-en", json={"group": "info"}, headers=ALICE)
        number = await new_ticket(app, client)
        await client.post(f"/tickets/{number}/lock", headers=ALICE)
        await asyncio.sleep(0.05)
        await client.post(f"/tickets/{number}/move", json={"queue": "Info-en"}, headers=ALICE)

        history = (await client.get(f"/tickets/{number}/history")).json()
        events = history["events"]
        assert [e["type"] for e in events] == [
            "TicketCreated",
            "ArticleAdded",
            "AutoReplyRequested",
            "OwnerChanged",
            "TicketLocked",
            "TicketMoved",
            "TicketUnlocked",
        ]
        assert events[4]["description"] == "Locked by alice" and events[4]["actor"] == "alice"
        assert events[5]["prev_hash"] == events[4]["hash"]
        assert history["ticket"]["queue"] == "Info-en" and history["ticket"]["lock"] is None

        locked_at = datetime.fromisoformat(events[4]["occurred_at"])
        moved_at = datetime.fromisoformat(events[5]["occurred_at"])
        between = locked_at + (moved_at - locked_at) / 2
        then = (await client.get(f"/tickets/{number}/history", params={"at": between.isoformat()})).json()
        assert (then["ticket"]["queue"], then["ticket"]["lock"]) == ("Raw", "alice")
        assert len(then["events"]) == 5
        before = locked_at - timedelta(days=1)
        nothing = (await client.get(f"/tickets/{number}/history", params={"at": before.isoformat()})).json()
        assert nothing["ticket"] is None and nothing["events"] == []
        bad = await client.get(f"/tickets/{number}/history", params={"at": "yesterday"})
        assert bad.status_code == 422 and bad.json()["field"] == "at"

        assert (await client.get("/audit/verify")).json() == {"ok": True, "streams_checked": 2, "broken": None}
        heads = (await client.get("/audit/heads")).json()
        assert heads["streams"][events[0]["data"]["ticket_id"]] == {"version": 7, "hash": events[-1]["hash"]}
        exported = (await client.get(f"/tickets/{number}/events.jsonl")).text.splitlines()
        assert [Envelope.from_json(line).hash for line in exported] == [e["hash"] for e in events]
        tickets = tickets_of(app)
        async with tickets.pool.acquire() as conn, conn.transaction():
            await conn.execute("set local firstline.allow_rewrite = 'on'")
            await conn.execute(
                "update events set data = jsonb_set(data, '{to_queue}', '\"Press\"')"
                " where stream_id = $1 and stream_version = 6",
                events[0]["data"]["ticket_id"],
            )
        verdict = (await client.get("/audit/verify")).json()
        assert verdict["ok"] is False
        assert verdict["broken"]["stream_id"] == events[0]["data"]["ticket_id"]
        assert verdict["broken"]["stream_version"] == 6 and verdict["broken"]["event_id"] == events[5]["event_id"]


async def workload(app, client) -> list[str]:  # type: ignore[no-untyped-def]
    """A realistic mix: queues, new tickets, follow-ups, locks, moves, answers, merges, notes."""
    for name, extra in (("Raw", {}), ("Info-en", {"unlock_timeout_minutes": 30}), ("Junk", {})):
        await client.put(f"/queues/{name}", json={"group": "users", **extra}, headers=ALICE)
    numbers = [
        await new_ticket(app, client, f"mail-{i}", subject=f"Question {i} about licences", queue="Raw")
        for i in range(8)
    ]
    await deliver(app, routed_envelope("mail-f", action="follow_up", ticket_number=numbers[0], subject="more"))
    await client.post(f"/tickets/{numbers[0]}/lock", headers=ALICE)
    await client.post(f"/tickets/{numbers[1]}/move", json={"queue": "Info-en"}, headers=BOB)
    await client.post(f"/tickets/{numbers[1]}/lock", headers=BOB)
    await client.post(f"/tickets/{numbers[2]}/answer", json={"body": "Answer two"}, headers=ALICE)
    await client.post(f"/tickets/{numbers[3]}/merge", json={"into": numbers[4]}, headers=ALICE)
    await client.post(f"/tickets/{numbers[5]}/spam", headers=ALICE)
    await client.post(f"/tickets/{numbers[6]}/note", json={"body": "internal remark"}, headers=BOB)
    await client.post(f"/tickets/{numbers[7]}/state", json={"state": "closed successful"}, headers=BOB)
    await client.post(f"/tickets/{numbers[7]}/watch", headers=BOB)
    return numbers


async def test_rebuild_matches_the_live_read_models(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        numbers = await workload(app, client)
        pool = tickets_of(app).pool
        live = await digest(pool)

        stored = [e async for e in EventStore(pool).iterate_all()]
        everything = await tickets_of(app).vault.open(pool, stored)
        async with pool.acquire() as conn, conn.transaction():
            await Projector().project(conn, everything)
        assert await digest(pool) == live, "events projected twice must change nothing"

        report = await rebuild(pool)
        assert report.matches, report.as_dict()
        assert report.as_dict()["rebuilt_digest"] == live == report.as_dict()["live_digest"]
        assert report.events == await pool.fetchval("select count(*) from events")
        assert await pool.fetchval("select count(*) from pg_namespace where nspname = $1", report.schema) == 0

        kept = await rebuild(pool, keep=True)
        await client.post(f"/tickets/{numbers[6]}/priority", json={"priority": 1}, headers=BOB)
        resumed = await rebuild(pool, resume=kept.schema)
        assert resumed.matches and resumed.events == kept.events + 1, resumed.as_dict()  # PriorityChanged
        live = await digest(pool)

        swapped = await rebuild(pool, swap=True)
        assert swapped.swapped and swapped.retired_schema
        assert await digest(pool) == live
        locked = await client.post(f"/tickets/{numbers[2]}/unlock", headers=ALICE)
        assert locked.status_code == 200 and locked.json()["ticket"]["locked"] is False
        assert (await rebuild(pool)).matches

        await pool.execute("update ticket_list set title = 'edited by hand' where number = $1", numbers[6])
        tampered = await rebuild(pool)
        assert not tampered.matches
        assert tampered.live["ticket_list"] != tampered.rebuilt["ticket_list"]
        assert tampered.live["articles"] == tampered.rebuilt["articles"]


async def test_queue_counts_lists_search_and_templates(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        numbers = await workload(app, client)
        again = await client.put("/queues/Raw", json={"group": "users"}, headers=ALICE)
        assert again.status_code == 200 and again.json()["changed"] is False
        pool = tickets_of(app).pool
        assert await pool.fetchval("select count(*) from events where stream_id = 'queue-Raw'") == 1
        assert await pool.fetchval("select key from outbox where headers->>'type' = 'QueueConfigured' limit 1") == (
            "queue:Raw"
        )

        def counts(view: dict) -> dict:
            return {q["name"]: (q["counts"], q["total"], q["open"], q["locked"]) for q in view["items"]}

        view = counts((await client.get("/queues")).json())
        assert view["Raw"] == ({"closed successful": 1, "merged": 1, "new": 3, "open": 1}, 6, 4, 2)
        assert view["Info-en"] == ({"new": 1}, 1, 1, 1)
        assert view["Junk"] == ({"closed unsuccessful": 1}, 1, 0, 0)
        async with pool.acquire() as conn:
            assert await store.compact_counts(conn) > 0
        assert counts((await client.get("/queues")).json()) == view

        raw_new = (await client.get("/tickets", params={"queues": "Raw", "state": "new,open"})).json()
        assert raw_new["total"] == 4 and len(raw_new["items"]) == 4
        locked = (await client.get("/tickets", params={"locked": "true"})).json()
        assert sorted(t["number"] for t in locked["items"]) == sorted(numbers[0:3])
        assert locked["total"] == 3
        paged = (
            await client.get("/tickets", params={"sort": "number", "order": "asc", "page": 2, "page_size": 3})
        ).json()
        assert [t["number"] for t in paged["items"]] == numbers[3:6] and paged["total"] == 8
        none_visible = (await client.get("/tickets", params={"queues": ""})).json()
        assert none_visible["total"] == 0 and none_visible["items"] == []
        bad_sort = await client.get("/tickets", params={"sort": "colour"})
        assert bad_sort.status_code == 422 and bad_sort.json()["field"] == "sort"
        too_big = await client.get("/tickets", params={"page_size": 100000})
        assert too_big.status_code == 422 and too_big.json()["field"] == "page_size"

        found = (await client.get("/search", params={"q": "internal remark"})).json()
        assert [t["number"] for t in found["items"]] == [numbers[6]] and "<b>" in found["items"][0]["snippet"]
        licences = (await client.get("/search", params={"q": "licences", "queues": "Info-en"})).json()
        assert [t["number"] for t in licences["items"]] == [numbers[1]]
        by_number = (await client.get("/search", params={"q": numbers[2]})).json()
        assert [t["number"] for t in by_number["items"]] == [numbers[2]]

        put = await client.put("/templates/thanks", json={"name": "Thanks", "body": "Thank you!", "queues": ["Raw"]})
        assert put.status_code == 200
        await client.put("/templates/generic", json={"name": "Generic", "body": "Hello."})
        assert [t["id"] for t in (await client.get("/templates", params={"queue": "Raw"})).json()["items"]] == [
            "generic",
            "thanks",
        ]
        assert [t["id"] for t in (await client.get("/templates", params={"queue": "Junk"})).json()["items"]] == [
            "generic"
        ]
        assert (await client.get("/templates/nope")).status_code == 404


async def test_timers_unlock_and_close(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        await client.put("/queues/Raw", json={"group": "users", "unlock_timeout_minutes": 1}, headers=ALICE)
        locked = await new_ticket(app, client, "mail-1")
        closing = await new_ticket(app, client, "mail-2")
        reminding = await new_ticket(app, client, "mail-3")
        await client.post(f"/tickets/{locked}/lock", headers=ALICE)
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        await client.post(
            f"/tickets/{closing}/state", json={"state": "pending auto close+", "pending_until": soon}, headers=ALICE
        )
        await client.post(f"/tickets/{closing}/lock", headers=ALICE)
        await client.post(
            f"/tickets/{reminding}/state", json={"state": "pending reminder", "pending_until": soon}, headers=BOB
        )
        await asyncio.sleep(1.1)
        tickets = tickets_of(app)
        assert await tick(tickets, datetime.now(UTC)) == 2
        assert await tick(tickets, datetime.now(UTC) + timedelta(minutes=2)) == 1
        assert await tick(tickets, datetime.now(UTC) + timedelta(minutes=2)) == 0

        closed = (await client.get(f"/tickets/{closing}")).json()
        assert (closed["state"], closed["locked"]) == ("closed successful", False)
        assert (await client.get(f"/tickets/{locked}")).json()["locked"] is False
        unlocked = (await client.get(f"/tickets/{locked}/history")).json()["events"][-1]
        assert unlocked["data"]["reason"] == "timeout" and unlocked["actor"] == "system:timer"
        reminder = (await client.get(f"/tickets/{reminding}/history")).json()["events"][-1]
        assert reminder["type"] == "PendingReminderReached"
        assert (await client.get(f"/tickets/{reminding}")).json()["state"] == "pending reminder"


async def test_a_new_ticket_gets_its_number_while_every_pooled_connection_is_taken(settings: ServiceSettings) -> None:
    """A mail's ticket number is reserved inside the consumer's transaction; agents' commands
    waiting for that transaction can hold every connection of the service's pool. The counter
    must not wait for that pool (it did, and the service stood still under load)."""
    async with running(tickets_settings(settings, db_pool_max=3, ticket_number_block=1)) as (app, _):
        tickets = tickets_of(app)
        held = []
        try:
            while True:  # take every connection the pool will give
                held.append(await tickets.pool.acquire(timeout=1))
        except TimeoutError:
            pass
        try:
            numbers = [await asyncio.wait_for(tickets.next_number(datetime.now(UTC)), 10) for _ in range(3)]
        finally:
            for conn in held:
                await tickets.pool.release(conn)
    assert held and len(set(numbers)) == 3

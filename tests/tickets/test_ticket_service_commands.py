"""The tickets service's HTTP commands against real PostgreSQL (and the broker the app connects to)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from services.tickets.state import fold
from shared.settings import ServiceSettings
from shared.ticket_numbers import format_ticket_number

from .service_kit import ALICE, BOB, deliver, new_ticket, routed_envelope, running, tickets_settings

pytestmark = pytest.mark.timeout(180)

NO_SUCH_NUMBER = format_ticket_number(date(2001, 1, 1), 10, 1)


async def test_lock_rules_over_http(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client)
        zoom = (await client.get(f"/tickets/{number}")).json()
        assert zoom["state"] == "new" and zoom["locked"] is False and zoom["version"] == 3

        first, second = await asyncio.gather(
            client.post(f"/tickets/{number}/lock", headers=ALICE),
            client.post(f"/tickets/{number}/lock", headers=BOB),
        )
        outcomes = sorted([first, second], key=lambda r: r.status_code)
        assert [r.status_code for r in outcomes] == [200, 409]
        winner = outcomes[0].json()["ticket"]["locked_by"]
        refused = outcomes[1].json()
        assert refused["error"] == "locked_by_other" and refused["locked_by"] == winner
        loser = BOB if winner == "alice" else ALICE

        again = await client.post(f"/tickets/{number}/lock", headers={"X-Actor": winner})
        assert again.status_code == 200 and again.json()["version"] == outcomes[0].json()["version"]
        unlock = await client.post(f"/tickets/{number}/unlock", headers=loser)
        assert unlock.status_code == 409 and unlock.json() == {
            "error": "not_lock_owner",
            "detail": unlock.json()["detail"],
            "locked_by": winner,
        }
        forced = await client.post(f"/tickets/{number}/unlock", json={"force": True}, headers=loser)
        assert forced.status_code == 200 and forced.json()["ticket"]["locked"] is False


async def test_fifty_concurrent_lock_attempts_one_wins(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings, db_pool_max=20)) as (app, client):
        number = await new_ticket(app, client)
        answers = await asyncio.gather(
            *(client.post(f"/tickets/{number}/lock", headers={"X-Actor": f"agent{i}"}) for i in range(50))
        )
        codes = [a.status_code for a in answers]
        assert codes.count(200) == 1, codes
        holder = next(a.json()["ticket"]["locked_by"] for a in answers if a.status_code == 200)
        refusals = [a.json() for a in answers if a.status_code == 409]
        assert len(refusals) == 49
        assert all(r["error"] == "locked_by_other" and r["locked_by"] == holder for r in refusals)
        history = (await client.get(f"/tickets/{number}/history")).json()
        assert [e["type"] for e in history["events"]].count("TicketLocked") == 1


async def test_agent_commands(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client)
        assert (await client.put("/queues/Info-en", json={"group": "info"}, headers=ALICE)).status_code == 200

        moved = await client.post(f"/tickets/{number}/move", json={"queue": "Info-en"}, headers=ALICE)
        assert moved.status_code == 200 and moved.json()["ticket"]["queue"] == "Info-en"
        unknown = await client.post(f"/tickets/{number}/move", json={"queue": "Nowhere"}, headers=ALICE)
        assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_queue"

        bad_state = await client.post(f"/tickets/{number}/state", json={"state": "sleeping"}, headers=ALICE)
        assert bad_state.status_code == 422 and bad_state.json()["error"] == "invalid_state"
        no_time = await client.post(f"/tickets/{number}/state", json={"state": "pending reminder"}, headers=ALICE)
        assert no_time.status_code == 422 and no_time.json()["error"] == "pending_time_required"
        until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        pending = await client.post(
            f"/tickets/{number}/state", json={"state": "pending reminder", "pending_until": until}, headers=ALICE
        )
        assert pending.status_code == 200
        assert pending.json()["ticket"]["state"] == "pending reminder"
        assert pending.json()["ticket"]["pending_until"] is not None

        bad_priority = await client.post(f"/tickets/{number}/priority", json={"priority": 9}, headers=ALICE)
        assert bad_priority.status_code == 422 and bad_priority.json()["error"] == "invalid_priority"
        not_a_number = await client.post(f"/tickets/{number}/priority", json={"priority": "high"}, headers=ALICE)
        assert not_a_number.status_code == 422
        assert not_a_number.json()["error"] == "invalid_input" and not_a_number.json()["field"] == "priority"
        priority = await client.post(f"/tickets/{number}/priority", json={"priority": 5}, headers=ALICE)
        assert priority.json()["ticket"]["priority"] == 5

        note = await client.post(f"/tickets/{number}/note", json={"body": "called back", "subject": "n"}, headers=BOB)
        articles = note.json()["ticket"]["articles"]
        assert [a["kind"] for a in articles] == ["email", "note"]
        assert articles[1]["body"] == "called back" and articles[1]["visible_to_customer"] is False

        titled = await client.post(f"/tickets/{number}/title", json={"title": "Blocked account"}, headers=ALICE)
        assert titled.json()["ticket"]["title"] == "Blocked account"
        owner = await client.post(f"/tickets/{number}/owner", json={"owner": "carla"}, headers=ALICE)
        assert owner.json()["ticket"]["owner"] == "carla"
        watched = await client.post(f"/tickets/{number}/watch", headers=BOB)
        assert watched.json()["ticket"]["watchers"] == ["bob"]
        listed = (await client.get("/tickets", params={"watched_by": "bob"})).json()
        assert [t["number"] for t in listed["items"]] == [number] and listed["total"] == 1

        missing_actor = await client.post(f"/tickets/{number}/lock")
        assert missing_actor.status_code == 422 and missing_actor.json()["field"] == "X-Actor"
        extra_field = await client.post(f"/tickets/{number}/note", json={"body": "x", "colour": "red"}, headers=ALICE)
        assert extra_field.status_code == 422 and extra_field.json()["field"] == "colour"
        assert (await client.post(f"/tickets/{NO_SUCH_NUMBER}/lock", headers=ALICE)).status_code == 404
        nowhere = await client.get(f"/tickets/{NO_SUCH_NUMBER}")
        assert nowhere.status_code == 404 and nowhere.json()["error"] == "ticket_not_found"


async def test_answer_locks_and_threads(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client, message_id="<m1@example.org>", references=["<m0@example.org>"])
        answered = await client.post(
            f"/tickets/{number}/answer",
            json={"body": "We unblocked it.", "agent_name": "Alice A."},
            headers={**ALICE, "X-Correlation-ID": "corr-42", "X-Causation-ID": "click-7"},
        )
        assert answered.status_code == 200
        ticket = answered.json()["ticket"]
        assert (ticket["state"], ticket["locked_by"], ticket["owner"]) == ("open", "alice", "alice")
        answer = ticket["articles"][-1]
        assert answer["kind"] == "answer" and answer["delivery"] == "queued"
        assert answer["to"] == ["carol@example.org"] and answer["in_reply_to"] == "<m1@example.org>"
        history = (await client.get(f"/tickets/{number}/history")).json()
        sent = next(e for e in history["events"] if e["type"] == "AnswerSent")
        assert sent["data"]["references"] == ["<m0@example.org>", "<m1@example.org>"]
        assert sent["data"]["subject"] == f"[Ticket#{number}] Re: My account is blocked"
        assert sent["data"]["customer_name"] == "Carol" and sent["data"]["agent_name"] == "Alice A."
        assert (sent["actor"], sent["correlation_id"], sent["causation_id"]) == ("alice", "corr-42", "click-7")
        bob = await client.post(f"/tickets/{number}/answer", json={"body": "me too"}, headers=BOB)
        assert bob.status_code == 409 and bob.json()["locked_by"] == "alice"


async def test_merge_unmerge_and_follow_up_to_a_merged_ticket(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        source = await new_ticket(app, client, "mail-1")
        target = await new_ticket(app, client, "mail-2", subject="Second", message_id="<m2@example.org>")
        merged = await client.post(f"/tickets/{source}/merge", json={"into": target}, headers=ALICE)
        assert merged.status_code == 200
        assert merged.json()["ticket"]["state"] == "merged" and merged.json()["ticket"]["merged_into"] == target
        into = merged.json()["into"]
        assert into["merged_from"] == [source]
        assert sorted(a["mail_id"] for a in into["articles"]) == ["mail-1", "mail-2"]

        refused = await client.post(f"/tickets/{source}/lock", headers=ALICE)
        assert refused.status_code == 409 and refused.json()["merged_into"] == target

        follow_up = routed_envelope("mail-3", action="follow_up", ticket_number=source, message_id="<m3@x>")
        await deliver(app, follow_up)
        where = (await client.get("/mails/mail-3")).json()
        assert where["ticket_number"] == target and where["status"] == "ticketed"

        unmerged = await client.post(f"/tickets/{source}/unmerge", headers=BOB)
        assert unmerged.status_code == 200
        assert unmerged.json()["ticket"]["state"] == "new" and unmerged.json()["ticket"]["merged_into"] is None
        target_zoom = (await client.get(f"/tickets/{target}")).json()
        assert sorted(a["mail_id"] for a in target_zoom["articles"]) == ["mail-2", "mail-3"]
        again = await client.post(f"/tickets/{source}/unmerge", headers=BOB)
        assert again.status_code == 409 and again.json()["error"] == "not_merged"
        itself = await client.post(f"/tickets/{source}/merge", json={"into": source}, headers=ALICE)
        assert itself.status_code == 422 and itself.json()["error"] == "cannot_merge_into_self"
        no_target = await client.post(f"/tickets/{source}/merge", json={"into": NO_SUCH_NUMBER}, headers=ALICE)
        assert no_target.status_code == 404


async def test_split_and_spam(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client, "mail-1")
        await deliver(app, routed_envelope("mail-2", action="follow_up", ticket_number=number, subject="Other thing"))
        article_id = (await client.get("/mails/mail-2")).json()["article_id"]
        split = await client.post(f"/tickets/{number}/split", json={"article_id": article_id}, headers=ALICE)
        assert split.status_code == 200
        new = split.json()["new_ticket"]
        assert new["title"] == "Other thing" and new["state"] == "open" and new["number"] != number
        assert new["articles"][0]["body"] == "Hello, please help." and new["articles"][0]["mail_id"] is None
        assert split.json()["ticket"]["splits"] == [new["number"]]

        spam = await client.post(f"/tickets/{new['number']}/spam", headers=ALICE)
        assert spam.status_code == 200
        assert (spam.json()["ticket"]["queue"], spam.json()["ticket"]["state"]) == ("Junk", "closed unsuccessful")
        assert spam.json()["ticket"]["spam"] is True


async def test_snapshots_are_taken_and_used(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings, snapshot_every=4)) as (app, client):
        number = await new_ticket(app, client)
        for i in range(6):
            await client.post(f"/tickets/{number}/note", json={"body": f"note {i}"}, headers=ALICE)
        tickets = app.state.tickets
        ticket_id = (await client.get(f"/tickets/{number}")).json()["ticket_id"]
        snapshot = await tickets.pool.fetchrow("select stream_version from snapshots where stream_id = $1", ticket_id)
        assert snapshot["stream_version"] == 8
        async with tickets.pool.acquire() as conn:
            loaded = await tickets.load(conn, ticket_id)
        stored = await tickets.events.read_stream(ticket_id)
        assert loaded == fold(await tickets.vault.open(tickets.pool, stored))
        assert loaded.version == 9


def guard(readable: list[str], permitted: list[str]) -> dict[str, str]:
    return {**ALICE, "X-Readable-Queues": json.dumps(readable), "X-Permitted-Queues": json.dumps(permitted)}


async def test_a_queue_guard_is_checked_on_the_ticket_in_the_commands_transaction(settings: ServiceSettings) -> None:
    """The gateway's permissions travel with the command: refused in a queue the agent cannot
    see (404, as for no ticket) or where the command is not permitted (403 naming the queue)."""
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client, queue="Raw")
        unseen = await client.post(f"/tickets/{number}/lock", headers=guard(["Info-en"], ["Info-en"]))
        assert unseen.status_code == 404 and unseen.json()["error"] == "ticket_not_found"
        read_only = await client.post(f"/tickets/{number}/lock", headers=guard(["Raw"], []))
        assert read_only.status_code == 403
        assert read_only.json() | {"detail": ""} == {"error": "queue_not_permitted", "queue": "Raw", "detail": ""}
        assert (await client.get(f"/tickets/{number}")).json()["locked"] is False
        locked = await client.post(f"/tickets/{number}/lock", headers=guard(["Raw"], ["Raw"]))
        assert locked.status_code == 200 and locked.json()["ticket"]["locked_by"] == "alice"

        assert (await client.put("/queues/Junk", json={"group": "junk"}, headers=ALICE)).status_code == 200
        moved = await client.post(f"/tickets/{number}/move", json={"queue": "Junk"}, headers=ALICE)
        assert moved.status_code == 200
        after_move = await client.post(f"/tickets/{number}/note", json={"body": "x"}, headers=guard(["Raw"], ["Raw"]))
        assert after_move.status_code == 404


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-Readable-Queues": '["Raw"]'}, "X-Permitted-Queues"),
        ({"X-Readable-Queues": "Raw", "X-Permitted-Queues": "[]"}, "X-Readable-Queues"),
        ({"X-Readable-Queues": "[]", "X-Permitted-Queues": "[1]"}, "X-Permitted-Queues"),
    ],
)
async def test_a_malformed_queue_guard_is_a_422_naming_the_header(
    settings: ServiceSettings, headers: dict[str, str], field: str
) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client)
        answer = await client.post(f"/tickets/{number}/lock", headers={**ALICE, **headers})
        assert answer.status_code == 422 and answer.json()["field"] == field
        assert (await client.get(f"/tickets/{number}")).json()["locked"] is False


async def test_commands_on_two_tickets_refuse_a_queue_guard_rather_than_ignore_it(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client)
        split = await client.post(
            f"/tickets/{number}/split", json={"article_id": "whatever"}, headers=guard(["Raw"], ["Raw"])
        )
        assert split.status_code == 422 and split.json()["field"] == "X-Permitted-Queues"

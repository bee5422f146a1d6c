"""Audit and replay in the tickets service (issue 8): time travel of a ticket and of a queue,
navigable history (mail → router decision → answer → delivery), exports, the report, the
audit CLI with signed heads, the rebuild as a background job, and crypto-shredding."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.tickets.privacy import ERASED
from services.tickets.rebuild import digest, rebuild
from shared.envelope import Envelope, make_envelope
from shared.events import AnswerDelivered
from shared.eventstore import EventStore, first_broken_link
from shared.settings import ServiceSettings
from tests.conftest import eventually

from .service_kit import ALICE, BOB, deliver, new_ticket, routed_envelope, running, tickets_of, tickets_settings

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]


async def _setup_queues(client: httpx.AsyncClient, *names: str) -> None:
    for name in names:
        assert (await client.put(f"/queues/{name}", json={"group": "users"}, headers=ALICE)).status_code == 200


async def _step(call: Any) -> datetime:
    """Run one command, check it worked, and return an instant after it (and before the next)."""
    response = await call
    assert response.status_code == 200, response.text
    moment = datetime.now(UTC)
    await asyncio.sleep(0.02)
    return moment


def _essentials(ticket: dict[str, Any] | None) -> dict[str, Any] | None:
    if ticket is None:
        return None
    merged = ticket["merged_into"]
    return {
        "state": ticket["state"],
        "queue": ticket["queue"],
        "lock": ticket["lock"],
        "owner": ticket["owner"],
        "articles": [(a["kind"], a["delivery"]) for a in ticket["articles"]],
        "merged_into": merged["into_number"] if merged else None,
        "absorbed": [a["number"] for a in ticket["absorbed"]],
    }


async def _at(client: httpx.AsyncClient, number: str, moment: datetime) -> dict[str, Any] | None:
    answer = await client.get(f"/tickets/{number}/history", params={"at": moment.isoformat()})
    assert answer.status_code == 200, answer.text
    return _essentials(answer.json()["ticket"])


async def test_time_travel_through_a_scripted_life(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        await _setup_queues(client, "Raw", "Info-en")
        before = datetime.now(UTC)
        await asyncio.sleep(0.02)
        one = await new_ticket(app, client, "mail-life-1")
        created = datetime.now(UTC)
        await asyncio.sleep(0.02)
        other = await new_ticket(app, client, "mail-life-2", message_id="<m2@example.org>")
        locked = await _step(client.post(f"/tickets/{one}/lock", headers=ALICE))
        answered = await _step(client.post(f"/tickets/{one}/answer", json={"body": "Try again."}, headers=ALICE))
        moved = await _step(client.post(f"/tickets/{one}/move", json={"queue": "Info-en"}, headers=ALICE))
        merged = await _step(client.post(f"/tickets/{one}/merge", json={"into": other}, headers=ALICE))
        closed = await _step(client.post(f"/tickets/{other}/state", json={"state": "closed successful"}, headers=BOB))

        mail = [("email", None)]
        answer = [("email", None), ("answer", "queued")]
        base = {"queue": "Raw", "merged_into": None, "absorbed": []}
        assert await _at(client, one, before) is None
        assert await _at(client, one, created) == {
            **base, "state": "new", "lock": None, "owner": None, "articles": mail
        }  # fmt: skip
        assert await _at(client, one, locked) == {
            **base, "state": "new", "lock": "alice", "owner": "alice", "articles": mail
        }  # fmt: skip
        assert await _at(client, one, answered) == {
            **base, "state": "open", "lock": "alice", "owner": "alice", "articles": answer
        }  # fmt: skip
        at_move = {**base, "queue": "Info-en", "state": "open", "lock": None, "owner": "alice", "articles": answer}
        assert await _at(client, one, moved) == at_move
        assert await _at(client, one, merged) == {**at_move, "state": "merged", "merged_into": other}
        assert await _at(client, one, closed) == {**at_move, "state": "merged", "merged_into": other}
        target = {**base, "state": "new", "lock": None, "owner": None, "articles": mail}
        assert await _at(client, other, moved) == target
        assert await _at(client, other, merged) == {**target, "absorbed": [one]}
        assert await _at(client, other, closed) == {**target, "absorbed": [one], "state": "closed successful"}


async def test_history_links_mail_router_decision_answer_and_delivery(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        routed = routed_envelope("mail-links", message_id="<links@example.org>")
        await deliver(app, routed)
        number = (await client.get("/mails/mail-links")).json()["ticket_number"]
        answered = (await client.post(f"/tickets/{number}/answer", json={"body": "Fixed."}, headers=ALICE)).json()
        ticket_id, answer = answered["ticket"]["ticket_id"], answered["ticket"]["articles"][-1]
        delivered = AnswerDelivered(
            ticket_id=ticket_id, article_id=answer["article_id"], message_id=answer["message_id"], relay_response="250"
        )
        delivery = make_envelope(delivered, stream_id=ticket_id, actor="system:notify")
        from services.tickets.handlers import delivery_handler

        async with tickets_of(app).pool.acquire() as conn, conn.transaction():
            await delivery_handler(tickets_of(app))(conn, delivery)

        events = {e["type"]: e for e in (await client.get(f"/tickets/{number}/history")).json()["events"]}
        created, article = events["TicketCreated"], events["ArticleAdded"]
        sent, result = events["AnswerSent"], events["AnswerDelivered"]
        assert created["causation_id"] == routed.event_id == article["causation_id"]
        assert article["links"]["caused_by"] == {
            "event_id": routed.event_id,
            "in_store": False,
            "type": "TicketRouted",
            "reasons_href": "/api/mails/mail-links",
        }
        assert article["links"]["mail"] == {"mail_id": "mail-links", "href": "/api/mails/mail-links"}
        assert sent["links"]["replies_to"] == article["event_id"]
        assert article["links"]["replied_by"] == [events["AutoReplyRequested"]["event_id"], sent["event_id"]]
        assert result["links"]["delivery_of"] == sent["event_id"]
        assert sent["links"]["deliveries"] == [result["event_id"]]

        noted = await client.post(
            f"/tickets/{number}/note",
            json={"body": "customer confirmed"},
            headers={**ALICE, "X-Causation-ID": sent["event_id"]},
        )
        note_event = (await client.get(f"/tickets/{number}/history")).json()["events"][-1]
        assert noted.status_code == 200 and note_event["type"] == "NoteAdded"
        one = (await client.get(f"/events/{sent['event_id']}")).json()
        assert one["ticket_number"] == number and one["stream_id"] == ticket_id and one["queue"] == "Raw"
        assert one["event"]["description"].startswith("Answer by alice to carol@example.org")
        assert [c["event_id"] for c in one["caused"]] == [note_event["event_id"]]
        back = (await client.get(f"/events/{note_event['event_id']}")).json()
        assert back["caused_by"]["event_id"] == sent["event_id"] and back["caused_by"]["in_store"] is True
        assert back["caused_by"]["type"] == "AnswerSent"
        mail_side = (await client.get(f"/events/{article['event_id']}")).json()
        assert mail_side["caused_by"]["in_store"] is False and mail_side["caused_by"]["type"] == "TicketRouted"
        for missing in ("not-a-uuid", "0191f0c4-0000-7000-8000-000000000000"):
            gone = await client.get(f"/events/{missing}")
            assert gone.status_code == 404 and gone.json()["error"] == "event_not_found"


async def test_queue_contents_at_an_instant(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        await _setup_queues(client, "Raw", "Info-en")
        before = datetime.now(UTC)
        await asyncio.sleep(0.02)
        first = await new_ticket(app, client, "mail-q1")
        second = await new_ticket(app, client, "mail-q2", message_id="<q2@example.org>")
        both = datetime.now(UTC)
        await asyncio.sleep(0.02)
        moved = await _step(client.post(f"/tickets/{second}/move", json={"queue": "Info-en"}, headers=ALICE))
        locked = await _step(client.post(f"/tickets/{first}/lock", headers=ALICE))
        third = await new_ticket(app, client, "mail-q3", message_id="<q3@example.org>")

        async def raw_at(moment: datetime, queue: str = "Raw") -> dict[str, Any]:
            answer = await client.get(f"/queues/{queue}/at", params={"at": moment.isoformat()})
            assert answer.status_code == 200, answer.text
            return answer.json()

        assert (await raw_at(before))["total"] == 0
        then = await raw_at(both)
        assert [t["number"] for t in then["items"]] == [first, second]
        assert then["counts"] == {"new": 2} and then["locked"] == 0 and then["page_size"] == 100
        assert [t["number"] for t in (await raw_at(moved))["items"]] == [first]
        assert [(t["number"], t["locked_by"]) for t in (await raw_at(locked))["items"]] == [(first, "alice")]
        now = await raw_at(datetime.now(UTC))
        assert [t["number"] for t in now["items"]] == [first, third] and now["locked"] == 1
        assert [t["number"] for t in (await raw_at(moved, "Info-en"))["items"]] == [second]
        assert [t["number"] for t in (await raw_at(both, "Info-en"))["items"]] == []
        bad = await client.get("/queues/Raw/at", params={"at": "soon"})
        assert bad.status_code == 422 and bad.json()["field"] == "at"


async def test_exports_in_commit_order_and_the_printable_report(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        start = datetime.now(UTC) - timedelta(seconds=1)
        number = await new_ticket(app, client, "mail-x", subject="<script>alert('x')</script> & more")
        middle = datetime.now(UTC)
        await asyncio.sleep(0.02)
        await client.post(f"/tickets/{number}/note", json={"body": "a <b>bold</b> note"}, headers=ALICE)
        end = datetime.now(UTC) + timedelta(seconds=1)
        store = EventStore(tickets_of(app).pool)
        in_order = [e.event_id for _, e in await store.read_all(limit=1000)]

        everything = await client.get("/audit/export", params={"from": start.isoformat(), "to": end.isoformat()})
        assert everything.status_code == 200 and everything.headers["content-type"] == "application/x-ndjson"
        lines = [Envelope.from_json(line) for line in everything.text.splitlines()]
        assert [e.event_id for e in lines] == in_order and len(lines) == 4
        assert first_broken_link([e for e in lines if e.stream_id == lines[0].stream_id]) is None
        early = await client.get("/audit/export", params={"from": start.isoformat(), "to": middle.isoformat()})
        assert [Envelope.from_json(line).type for line in early.text.splitlines()] == [
            "TicketCreated",
            "ArticleAdded",
            "AutoReplyRequested",
        ]

        report = await client.get(f"/tickets/{number}/report.html")
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        html = report.text
        assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html
        assert "a &lt;b&gt;bold&lt;/b&gt; note" in html and "@media print" in html
        assert "Note added by alice" in html and "Mail from Carol &lt;carol@example.org&gt; added" in html
        assert (await client.get("/tickets/2001010110999999/report.html")).status_code == 404


def _cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "services.tickets.audit", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


async def test_audit_cli_verify_and_signed_heads(settings: ServiceSettings, tmp_path: Path) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        numbers = [await new_ticket(app, client, f"mail-h{i}", message_id=f"<h{i}@example.org>") for i in range(3)]
        env = {"DATABASE_URL": settings.database_url}
        code, out = await asyncio.to_thread(_cli, "verify", env=env)
        assert code == 0 and out.startswith("OK: 3 streams verified"), out
        code, keys = await asyncio.to_thread(_cli, "generate-key", env=env)
        pair = dict(line.split("=", 1) for line in keys.splitlines())
        signing = {**env, "AUDIT_SIGNING_KEY": pair["AUDIT_SIGNING_KEY"]}
        heads = tmp_path / "heads.json"
        code, out = await asyncio.to_thread(_cli, "export-heads", str(heads), env=signing)
        assert code == 0 and "3 stream heads written" in out, out
        document = orjson.loads(heads.read_bytes())
        assert document["public_key"] == pair["AUDIT_PUBLIC_KEY"] and len(document["streams"]) == 3

        await client.post(f"/tickets/{numbers[0]}/note", json={"body": "later"}, headers=ALICE)
        await new_ticket(app, client, "mail-h9", message_id="<h9@example.org>")
        check = ("check-heads", str(heads), "--public-key", pair["AUDIT_PUBLIC_KEY"])
        code, out = await asyncio.to_thread(_cli, *check, env=env)
        assert code == 0 and out.startswith("OK: the log still extends all 3 exported heads"), out

        other_key = "00" * 32
        code, out = await asyncio.to_thread(_cli, "check-heads", str(heads), "--public-key", other_key, env=env)
        assert code == 1 and out.startswith("BAD SIGNATURE"), out

        victim = next(s for s in document["streams"] if s["stream_id"] != document["streams"][0]["stream_id"])
        async with tickets_of(app).pool.acquire() as conn, conn.transaction():
            await conn.execute("set local firstline.allow_rewrite = 'on'")
            await conn.execute(
                "update events set data = jsonb_set(data, '{queue}', '\"Press\"') where stream_id = $1"
                " and stream_version = 1",
                victim["stream_id"],
            )
        code, out = await asyncio.to_thread(_cli, "verify", env=env)
        assert code == 1 and f"BROKEN: stream {victim['stream_id']} version 1" in out, out
        code, out = await asyncio.to_thread(_cli, *check, env=env)
        assert code == 1 and victim["stream_id"] in out, out

        async with tickets_of(app).pool.acquire() as conn, conn.transaction():  # a forger recomputes the hashes
            await conn.execute("set local firstline.allow_rewrite = 'on'")
            stored = await EventStore(tickets_of(app).pool).read_stream(victim["stream_id"], conn=conn)
            await _rechain(conn, stored)
        code, out = await asyncio.to_thread(_cli, "verify", env=env)
        assert code == 0, out
        code, out = await asyncio.to_thread(_cli, *check, env=env)
        assert code == 1 and out.startswith(f"REWRITTEN: stream {victim['stream_id']} at version"), out


async def _rechain(conn: Any, stream: list[Envelope]) -> None:
    from shared.envelope import GENESIS_HASH, seal

    prev = GENESIS_HASH
    for e in stream:
        resealed = seal(e, stream_version=e.stream_version, prev_hash=prev)
        await conn.execute(
            "update events set prev_hash = $2, hash = $3 where event_id = $1::uuid",
            e.event_id,
            resealed.prev_hash,
            resealed.hash,
        )
        prev = resealed.hash


async def test_rebuild_as_a_background_job(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        for i in range(4):
            await new_ticket(app, client, f"mail-r{i}", message_id=f"<r{i}@example.org>")
        live = await digest(tickets_of(app).pool)
        started = await client.post("/admin/rebuild", json={"swap": True}, headers=ALICE)
        assert started.status_code == 202, started.text
        job = started.json()
        assert job["state"] in ("running", "done") and job["swap"] is True

        async def finished() -> dict[str, Any] | None:
            status = (await client.get(f"/admin/rebuild/{job['job_id']}")).json()
            return status if status["state"] != "running" else None

        done = await eventually(finished, timeout=60)
        assert (done["state"], done["matches"], done["swapped"]) == ("done", True, True), done
        assert done["events"] == 12 and done["report"]["rebuilt_digest"] == live
        assert await digest(tickets_of(app).pool) == live
        assert (await client.get("/admin/rebuild")).json()["items"][0]["job_id"] == job["job_id"]

        async with tickets_of(app).pool.acquire() as holder:  # another replica's rebuild holds the lock
            await holder.execute("select pg_advisory_lock($1)", 0x46_4C_52_42)
            busy = await client.post("/admin/rebuild", headers=ALICE)
            assert busy.status_code == 409 and busy.json()["error"] == "rebuild_running"
            await holder.execute("select pg_advisory_unlock_all()")
        assert (await client.get("/admin/rebuild/nope")).status_code == 404


async def test_erasing_a_customer_shreds_their_text_and_keeps_the_chain(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        pool = tickets_of(app).pool
        secret = "zanzibar"  # in carol's subject and body; search would find it
        carol = await new_ticket(app, client, "mail-c1", subject=f"Account {secret}", message_id="<c1@example.org>")
        await deliver(app, routed_envelope("mail-c2", subject=f"Second {secret}", message_id="<c2@example.org>"))
        carol_again = (await client.get("/mails/mail-c2")).json()["ticket_number"]
        dave = await new_ticket(
            app,
            client,
            "mail-d1",
            subject=f"Dave {secret}",
            sender="dave@example.net",
            sender_name="Dave",
            message_id="<d1@example.org>",
        )
        await client.post(f"/tickets/{carol}/answer", json={"body": f"Re {secret}: done"}, headers=ALICE)
        await client.post(f"/tickets/{carol}/note", json={"body": "called her back"}, headers=ALICE)
        assert await pool.fetchval("select count(*) from events where data::text like '%' || $1 || '%'", secret) == 0
        assert await pool.fetchval("select count(*) from events where data::text like '%carol@%'") == 0
        assert await pool.fetchval("select count(*) from outbox where convert_from(payload, 'UTF8') like '%carol@%'")
        zoom = (await client.get(f"/tickets/{carol}")).json()
        assert zoom["customer_email"] == "carol@example.org" and secret in zoom["articles"][0]["subject"]
        assert (await client.get("/search", params={"q": secret})).json()["total"] == 3

        erased = await client.post("/customers/carol@example.org/erase", headers=ALICE)
        assert erased.status_code == 200, erased.text
        result = erased.json()
        assert sorted(result["tickets"]) == sorted([carol, carol_again]) and len(result["subjects"]) == 1
        again = await client.post("/customers/carol@example.org/erase", headers=ALICE)
        assert again.status_code == 404 and again.json()["error"] == "customer_not_found"

        zoom = (await client.get(f"/tickets/{carol}")).json()
        assert (zoom["customer_email"], zoom["title"]) == (ERASED, ERASED)
        assert {a["body"] for a in zoom["articles"]} == {ERASED}
        assert [a["subject"] for a in zoom["articles"]] == [ERASED, ERASED, ""]  # mail, answer, note
        assert zoom["articles"][0]["from"] == ERASED and zoom["articles"][1]["to"] == [ERASED]
        hits = (await client.get("/search", params={"q": secret})).json()
        assert [t["number"] for t in hits["items"]] == [dave]
        assert (await client.get("/search", params={"q": "carol"})).json()["total"] == 0
        history = (await client.get(f"/tickets/{carol}/history")).json()
        assert secret not in orjson.dumps(history).decode() and "carol@" not in orjson.dumps(history).decode()
        assert history["ticket"]["customer_email"] == ERASED
        assert "carol" not in (await client.get(f"/tickets/{carol}/report.html")).text
        assert (await client.get(f"/tickets/{dave}")).json()["customer_email"] == "dave@example.net"
        assert await pool.fetchval("select count(*) from snapshots where stream_id = $1", zoom["ticket_id"]) == 0
        outbox = "select count(*) from outbox where convert_from(payload, 'UTF8') like '%' || $1 || '%'"
        assert await pool.fetchval(outbox, "carol@") == 0 and await pool.fetchval(outbox, "dave@") > 0

        assert (await client.get("/audit/verify")).json()["ok"] is True
        report = await rebuild(pool)
        assert report.matches, report.as_dict()
        assert await digest(pool) == report.as_dict()["rebuilt_digest"]

        await deliver(
            app,
            routed_envelope(
                "mail-c3", action="follow_up", ticket_number=carol, subject="Back again", message_id="<c3@example.org>"
            ),
        )
        articles = (await client.get(f"/tickets/{carol}")).json()["articles"]
        assert articles[-1]["subject"] == "Back again" and articles[-1]["body"] == "Hello, please help."
        assert await pool.fetchval("select count(*) from events where data::text like '%Back again%'") == 0
        assert (await rebuild(pool)).matches
        assert (await client.get("/audit/verify")).json()["ok"] is True

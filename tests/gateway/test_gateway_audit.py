"""Audit through the gateway, in front of the real tickets service: who may navigate events,
see a queue's past, print a report, export the log, rebuild, and erase a customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import eventually
from tests.gateway.conftest import agent_client, create_agent, csrf, login, other_client
from tests.gateway.test_gateway_with_tickets import World, world  # noqa: F401  (the module's fixture)

pytestmark = pytest.mark.timeout(300)


async def _event_of(client: Any, number: str, event_type: str) -> dict[str, Any]:
    history = (await client.get(f"/api/tickets/{number}/history")).json()
    return next(e for e in history["events"] if e["type"] == event_type)


async def test_events_reports_and_queue_history_follow_ticket_visibility(world: World) -> None:  # noqa: F811
    admin = world.gateway
    secret_event = await _event_of(admin, world.secret, "ArticleAdded")
    async with agent_client(admin, "auditvol", {"Raw": ["ro"]}) as vol:
        article = await _event_of(vol, world.raw, "ArticleAdded")
        seen = await vol.get(f"/api/audit/events/{article['event_id']}")
        assert seen.status_code == 200, seen.text
        body = seen.json()
        assert body["ticket_number"] == world.raw and body["event"]["links"]["mail"]["mail_id"] == world.raw_mail
        assert body["caused_by"]["type"] == "TicketRouted" and body["caused_by"]["in_store"] is False
        hidden = await vol.get(f"/api/audit/events/{secret_event['event_id']}")
        unknown = await vol.get("/api/audit/events/0191f0c4-0000-7000-8000-000000000000")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["error"] == unknown.json()["error"] == "event_not_found"

        now = datetime.now(UTC).isoformat()
        raw = await vol.get("/api/queues/Raw/history", params={"at": now})
        assert raw.status_code == 200 and [t["number"] for t in raw.json()["items"]] == [world.raw]
        long_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        assert (await vol.get("/api/queues/Raw/history", params={"at": long_ago})).json()["total"] == 0
        denied = await vol.get("/api/queues/Permissions/history", params={"at": now})
        assert denied.status_code == 404 and denied.json()["error"] == "queue_not_found"

        report = await vol.get(f"/api/tickets/{world.raw}/report.html")
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert (
            "Printer zebra on fire" in report.text and "default-src 'none'" in report.headers["content-security-policy"]
        )
        assert (await vol.get(f"/api/tickets/{world.secret}/report.html")).status_code == 404
        lines = await vol.get(f"/api/tickets/{world.raw}/events.jsonl")
        assert lines.status_code == 200 and len(lines.text.splitlines()) >= 2
        assert (await vol.get(f"/api/tickets/{world.secret}/events.jsonl")).status_code == 404
    assert (await admin.get(f"/api/audit/events/{secret_event['event_id']}")).status_code == 200


async def test_the_whole_log_needs_the_audit_capability(world: World) -> None:  # noqa: F811
    admin = world.gateway
    window = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "to": datetime.now(UTC).isoformat()}
    async with agent_client(admin, "plainvol", {"Raw": ["rw"]}) as vol:
        assert (await vol.get("/api/audit/export", params=window)).status_code == 403
        assert (await vol.get("/api/audit/heads")).status_code == 403
        assert (await vol.post("/api/admin/rebuild", json={}, headers=csrf(vol))).status_code == 403
        erase = await vol.post("/api/admin/customers/carol@example.org/erase", headers=csrf(vol))
        assert erase.status_code == 403
    await create_agent(admin, "auditor", {}, capabilities=["audit"])
    async with other_client(admin) as auditor:
        await login(auditor, "auditor", "volunteer-pass-1")
        export = await auditor.get("/api/audit/export", params=window)
        assert export.status_code == 200 and export.headers["content-type"] == "application/x-ndjson"
        types = [line.split('"type":"', 1)[1].split('"', 1)[0] for line in export.text.splitlines()]
        assert types.count("TicketCreated") >= 2 and "QueueConfigured" in types
        heads = (await auditor.get("/api/audit/heads")).json()
        assert heads["digest"] and len(heads["streams"]) >= 5


async def test_admin_rebuild_and_erasure(world: World) -> None:  # noqa: F811
    admin = world.gateway
    started = await admin.post("/api/admin/rebuild", json={"swap": True}, headers=csrf(admin))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]

    async def finished() -> dict[str, Any] | None:
        status = (await admin.get(f"/api/admin/rebuild/{job_id}")).json()
        return status if status["state"] != "running" else None

    done = await eventually(finished, timeout=120)
    assert (done["state"], done["matches"], done["swapped"]) == ("done", True, True), done
    assert (await admin.get("/api/admin/rebuild")).json()["items"][0]["job_id"] == job_id

    erased = await admin.post("/api/admin/customers/carol@example.org/erase", headers=csrf(admin))
    assert erased.status_code == 200, erased.text
    assert sorted(erased.json()["tickets"]) == sorted([world.raw, world.secret])
    zoom = (await admin.get(f"/api/tickets/{world.raw}")).json()
    assert zoom["customer_email"] == "[erased]" and zoom["articles"][0]["body"] == "[erased]"
    assert (await admin.get("/api/audit/verify")).json()["ok"] is True
    assert (await admin.get("/api/search", params={"q": "zebra"})).json()["total"] == 0
    audit = (await admin.get("/api/admin/audit", params={"page_size": 500})).json()["items"]
    erasures = [e for e in audit if e["action"] == "customer.erase"]
    assert len(erasures) == 1 and "carol" not in str(erasures[0])
    assert any(e["action"] == "rebuild.start" for e in audit)
    again = await admin.post("/api/admin/customers/carol@example.org/erase", headers=csrf(admin))
    assert again.status_code == 404 and again.json()["error"] == "customer_not_found"

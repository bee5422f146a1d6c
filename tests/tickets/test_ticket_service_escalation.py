"""Escalation through the service, against real PostgreSQL: queue times reach new tickets, a
timer round emits the breach as the system, the list shows and sorts by ``escalation_due_at``,
queue changes reach open tickets, and a rebuild reproduces it all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.rebuild import digest, rebuild
from services.tickets.timers import tick
from shared.settings import ServiceSettings

from .service_kit import ALICE, new_ticket, running, tickets_of, tickets_settings

pytestmark = pytest.mark.timeout(180)


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def test_timer_breaches_and_the_list_shows_escalation(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        queue = {"group": "users", "first_response_minutes": 10, "solution_minutes": 60}
        assert (await client.put("/queues/Raw", json=queue, headers=ALICE)).status_code == 200
        first = await new_ticket(app, client, "mail-1")
        plain = await new_ticket(app, client, "mail-2", queue="Misc")  # a queue without times
        zoom = (await client.get(f"/tickets/{first}")).json()
        created = _at(zoom["created_at"])
        assert created is not None
        assert (_at(zoom["escalation_due_at"]), zoom["escalation_kind"]) == (
            created + timedelta(minutes=10),
            "first_response",
        )
        assert (await client.get(f"/tickets/{plain}")).json()["escalation_due_at"] is None

        listed = (await client.get("/tickets", params={"sort": "escalation", "order": "asc"})).json()["items"]
        assert [i["number"] for i in listed] == [first, plain]  # nulls last
        assert listed[0]["escalation_kind"] == "first_response"
        listed = (await client.get("/tickets", params={"sort": "escalation", "queues": "Raw,Misc"})).json()["items"]
        assert [i["number"] for i in listed] == [first, plain]  # nulls last descending too

        tickets = tickets_of(app)
        assert await tick(tickets, datetime.now(UTC)) == 0
        assert await tick(tickets, created + timedelta(minutes=8)) == 1  # the warning, at 80 %
        assert await tick(tickets, created + timedelta(minutes=10)) == 1
        assert await tick(tickets, created + timedelta(minutes=11)) == 0  # once per due time
        events = (await client.get(f"/tickets/{first}/history")).json()["events"]
        breach = events[-1]
        assert (breach["type"], breach["actor"]) == ("EscalationBreached", "system:timer")
        assert breach["data"]["kind"] == "first_response"
        assert breach["description"].startswith("Escalation: first response time breached")
        assert [e["type"] for e in events[-2:]] == ["EscalationWarning", "EscalationBreached"]
        assert events[-2]["description"].startswith("Escalation warning: first response time due at")

        # The queue's times change: the open ticket runs on the new ones after a timer round.
        await client.put("/queues/Raw", json={**queue, "first_response_minutes": 30}, headers=ALICE)
        await tick(tickets, created + timedelta(minutes=12))
        zoom = (await client.get(f"/tickets/{first}")).json()
        assert _at(zoom["escalation_due_at"]) == created + timedelta(minutes=30)

        # An answer meets the first response; the solution time is what is left.
        answered = await client.post(f"/tickets/{first}/answer", json={"body": "Done."}, headers=ALICE)
        assert answered.status_code == 200
        item = answered.json()["ticket"]
        solution = (created + timedelta(minutes=60), "solution")
        assert (_at(item["escalation_due_at"]), item["escalation_kind"]) == solution

        live = await digest(tickets.pool)
        report = await rebuild(tickets.pool)
        assert report.matches and report.as_dict()["rebuilt_digest"] == live

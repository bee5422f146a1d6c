"""Creating phone and email tickets through the gateway: who may, checked before tickets is asked.

The pure rules (``new_ticket_problem``) against every permission kind, then the API on a gateway
whose tickets service is not running: a request the gateway lets through reaches tickets and
comes back 503 naming it, so 503 here means "allowed", 403/422 "refused by the gateway".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.gateway.desk import answer_subject, customer_name_of, new_ticket_problem, preview_request
from services.gateway.permissions import PERMISSIONS, AgentAccess, Queue
from tests.gateway.conftest import RunningGateway, agent_client, configure_queues, create_agent, csrf, login

pytestmark = pytest.mark.timeout(180)

RAW = Queue("Raw", "users")
QUEUE_GROUPS = {"Raw": "users", "Junk": "junk", "Permissions": "permissions"}


def access(username: str, kinds: set[str], is_admin: bool = False) -> AgentAccess:
    return AgentAccess(username, groups={"queue:Raw": frozenset(kinds)}, is_admin=is_admin)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("permission", PERMISSIONS)
def test_create_needs_create_or_rw(permission: str) -> None:
    problem = new_ticket_problem(access("amy", {permission}), RAW, lock=False, owner=None, owner_access=None)
    if permission in ("create", "rw"):
        assert problem is None
    else:
        assert problem is not None and problem.status == 403
        assert problem.extra == {"action": "create", "queue": "Raw", "permission": "create"}
        assert "'create' needs 'create' permission on queue 'Raw'" == problem.detail


@pytest.mark.parametrize("permission", PERMISSIONS)
def test_locking_a_new_ticket_needs_rw(permission: str) -> None:
    agent = access("amy", {"create", permission})
    problem = new_ticket_problem(agent, RAW, lock=True, owner=None, owner_access=None)
    if permission == "rw":
        assert problem is None
    else:
        assert problem is not None and problem.status == 403
        assert (problem.extra["action"], problem.extra["permission"]) == ("lock", "rw")


@pytest.mark.parametrize("permission", PERMISSIONS)
def test_another_owner_needs_the_owner_permission(permission: str) -> None:
    agent = access("amy", {"create", permission})
    colleague = access("bob", {"ro"})
    problem = new_ticket_problem(agent, RAW, lock=False, owner="bob", owner_access=colleague)
    if permission in ("owner", "rw"):
        assert problem is None
    else:
        assert problem is not None and problem.status == 403
        assert (problem.extra["action"], problem.extra["permission"]) == ("owner", "owner")


def test_the_owner_must_see_the_queue_and_hold_rw_to_hold_the_lock() -> None:
    agent = access("amy", {"rw"})
    for owner_access, lock, expected in (
        (None, False, "ro"),  # no such (valid) agent
        (access("bob", {"note"}), False, "ro"),
        (access("bob", {"ro"}), True, "rw"),
    ):
        problem = new_ticket_problem(agent, RAW, lock=lock, owner="bob", owner_access=owner_access)
        assert problem is not None and problem.status == 422, (owner_access, lock)
        assert problem.error == "invalid_owner" and problem.extra == {"field": "owner", "permission": expected}
    assert new_ticket_problem(agent, RAW, lock=True, owner="bob", owner_access=access("bob", {"rw"})) is None
    assert new_ticket_problem(agent, RAW, lock=True, owner="amy", owner_access=None) is None  # oneself
    admin = AgentAccess("root", is_admin=True)
    assert new_ticket_problem(admin, RAW, lock=True, owner="bob", owner_access=access("bob", {"rw"})) is None


def test_preview_request_takes_the_ticket_fields_like_an_answer() -> None:
    ticket: dict[str, Any] = {
        "number": "2026112510000017",
        "title": "Printer on fire",
        "queue": "Raw",
        "customer_email": "carol@example.org",
        "articles": [
            {"sender_type": "customer", "channel": "email", "from": "Carol Customer <carol@example.org>"},
            {"sender_type": "agent", "channel": "email", "from": "Raw <raw@firstline.example>"},
        ],
    }
    assert customer_name_of(ticket) == "Carol Customer"
    request = preview_request(ticket, {"body": "It is out now."}, "amy")
    assert request == {
        "queue": "Raw",
        "ticket_number": "2026112510000017",
        "title": "Printer on fire",
        "customer_name": "Carol Customer",
        "customer_email": "carol@example.org",
        "body": "It is out now.",
        "subject": "[Ticket#2026112510000017] Re: Printer on fire",
        "agent_name": "amy",
    }
    assert answer_subject("1", "[Ticket#1] Re: x") == "[Ticket#1] Re: x"
    assert answer_subject("1", "x", "Own subject") == "[Ticket#1] Own subject"


# --------------------------------------------------------------------------- the API (tickets not running)


@pytest.fixture
async def admin(gateway: httpx.AsyncClient, running_gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    await login(gateway)
    if not running_gateway.queues_configured:
        await configure_queues(running_gateway.settings, gateway, QUEUE_GROUPS)
        running_gateway.queues_configured = True
    yield gateway


def phone_ticket(queue: str = "Raw", **fields: Any) -> dict[str, Any]:
    return {
        "kind": "phone",
        "queue": queue,
        "customer": {"email": "carol@example.org", "name": "Carol"},
        "subject": "Called about the printer",
        "body": "Carol called: the printer is on fire.",
        **fields,
    }


async def test_create_permission_matrix_through_the_api(admin: httpx.AsyncClient) -> None:
    async with agent_client(admin, "cora", {"Raw": ["ro"]}) as ro_only:
        denied = await ro_only.post("/api/tickets", json=phone_ticket(), headers=csrf(ro_only))
        assert denied.status_code == 403, denied.text
        assert denied.json()["permission"] == "create" and denied.json()["queue"] == "Raw"
        assert denied.json()["detail"] == "'create' needs 'create' permission on queue 'Raw'"

    async with agent_client(admin, "cid", {"Raw": ["create"]}) as creator:
        assert (await creator.post("/api/tickets", json=phone_ticket(), headers=csrf(creator))).status_code == 503
        locked = await creator.post("/api/tickets", json=phone_ticket(lock=True), headers=csrf(creator))
        assert locked.status_code == 403 and locked.json()["permission"] == "rw"
        assert locked.json()["action"] == "lock"
        other = await creator.post("/api/tickets", json=phone_ticket(owner="admin"), headers=csrf(creator))
        assert other.status_code == 403 and other.json()["permission"] == "owner"
        itself = await creator.post("/api/tickets", json=phone_ticket(owner="CID"), headers=csrf(creator))
        assert itself.status_code == 503  # oneself as owner needs nothing more

        # A queue the agent has no rights on answers exactly like one that does not exist.
        hidden = await creator.post("/api/tickets", json=phone_ticket("Permissions"), headers=csrf(creator))
        unknown = await creator.post("/api/tickets", json=phone_ticket("Nowhere"), headers=csrf(creator))
        assert hidden.status_code == unknown.status_code == 403
        assert hidden.json()["detail"].replace("Permissions", "<q>") == unknown.json()["detail"].replace(
            "Nowhere", "<q>"
        )
        assert set(hidden.json()) == set(unknown.json())

    await create_agent(admin, "raw-ro", {"Raw": ["ro"]})
    await create_agent(admin, "raw-rw", {"Raw": ["rw"]})
    async with agent_client(admin, "olga", {"Raw": ["create", "owner", "rw"]}) as owner_setter:
        for owner, lock, status in (
            ("nobody-here", False, 422),
            ("raw-ro", False, 503),
            ("raw-ro", True, 422),
            ("raw-rw", True, 503),
        ):
            answer = await owner_setter.post(
                "/api/tickets", json=phone_ticket(owner=owner, lock=lock), headers=csrf(owner_setter)
            )
            assert answer.status_code == status, (owner, lock, answer.text)
            if status == 422:
                assert answer.json()["error"] == "invalid_owner" and answer.json()["field"] == "owner"


async def test_create_validates_the_body(admin: httpx.AsyncClient) -> None:
    for bad in (
        phone_ticket(kind="fax"),
        phone_ticket(priority=6),
        {k: v for k, v in phone_ticket().items() if k != "customer"},
        phone_ticket(body=""),
        phone_ticket(surprise=1),
    ):
        answer = await admin.post("/api/tickets", json=bad, headers=csrf(admin))
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"]


async def test_preview_of_an_unknown_ticket_when_tickets_is_down_names_it(admin: httpx.AsyncClient) -> None:
    answer = await admin.post("/api/tickets/2001010110999999/answer/preview", json={"body": "x"}, headers=csrf(admin))
    assert answer.status_code == 503 and answer.json()["service"] == "tickets"

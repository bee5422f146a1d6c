"""GET/PUT /api/me/preferences and the agent directory (AgentProfileChanged on agent.directory)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.gateway.profiles import (
    InvalidPreference,
    changed_profiles,
    compute_profiles,
    merge_preferences,
    preferences_of,
)
from services.gateway.settings import GatewaySettings
from shared.envelope import Envelope
from shared.events import TOPIC_AGENT_DIRECTORY, AgentProfileChanged
from tests.conftest import eventually
from tests.gateway.conftest import (
    PASSWORD,
    bearer,
    configure_queues,
    create_agent,
    csrf,
    login,
    other_client,
)
from tests.notify.kit import TopicReader, reading

pytestmark = pytest.mark.timeout(180)

ALL_ON = {
    "new_ticket": True,
    "follow_up": True,
    "unlocked_timeout": True,
    "pending_reminder": True,
    "escalation_warning": True,
    "escalation_breach": True,
}
DEFAULTS = {"language": "en", "notifications": ALL_ON, "my_queues": []}


# --------------------------------------------------------------------------- pure


def test_defaults_fill_what_is_missing() -> None:
    assert preferences_of(None, None, None).as_json() == DEFAULTS
    prefs = preferences_of("de", {"follow_up": False, "retired_kind": True}, ["Raw"])
    assert prefs.as_json() == {"language": "de", "notifications": {**ALL_ON, "follow_up": False}, "my_queues": ["Raw"]}


def test_merge_changes_only_what_is_given_and_names_bad_fields() -> None:
    current = preferences_of(None, None, ["Raw"])
    merged = merge_preferences(
        current, language=None, notifications={"new_ticket": False}, my_queues=None, readable=["Raw"]
    )
    assert merged.as_json() == {**DEFAULTS, "notifications": {**ALL_ON, "new_ticket": False}, "my_queues": ["Raw"]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"language": "fr"}, "language"),
        ({"notifications": {"birthday": True}}, "notifications.birthday"),
        ({"my_queues": ["Raw", "Press"]}, "my_queues[1]"),
    ]
    for kwargs, field in cases:
        args: dict[str, Any] = {"language": None, "notifications": None, "my_queues": None} | kwargs
        with pytest.raises(InvalidPreference) as raised:
            merge_preferences(current, readable=["Raw"], **args)
        assert raised.value.field == field


def test_changed_profiles_bumps_revisions_and_retires_missing_agents() -> None:
    a = {"agent": "a", "valid": True}
    assert changed_profiles({"a": a}, {}) == [("a", a, 1)]
    assert changed_profiles({"a": a}, {"a": (a, 3)}) == []
    assert changed_profiles({"a": {**a, "email": "x"}}, {"a": (a, 3)}) == [("a", {**a, "email": "x"}, 4)]
    assert changed_profiles({}, {"a": (a, 3)}) == [("a", {**a, "valid": False}, 4)]
    assert changed_profiles({}, {"a": ({**a, "valid": False}, 4)}) == []


def test_profiles_from_grants_roles_and_admin_rights() -> None:
    def agent(id: int, username: str, **fields: Any) -> dict[str, Any]:
        row = {"id": id, "username": username, "full_name": "", "email": None, "is_admin": False, "valid": True}
        return row | {"language": None, "notifications": None, "my_queues": None} | fields

    sources: dict[str, list[Any]] = {
        "agents": [
            agent(1, "root", is_admin=True),
            agent(2, "ro_info", notifications={"new_ticket": False}, my_queues=["Info-en"], language="de"),
            agent(3, "via_role", email="r@x.example", full_name="R", valid=False),
            agent(4, "nothing"),
        ],
        "agent_groups": [
            {"agent_id": 2, "group_name": "info", "permissions": ["ro"]},
            {"agent_id": 4, "group_name": "queue:Raw", "permissions": ["note"]},  # no ro: not readable
        ],
        "agent_roles": [{"agent_id": 3, "role_name": "press"}],
        "role_groups": [{"role_name": "press", "group_name": "queue:Press", "permissions": ["rw"]}],
        "queues": [{"name": "Info-en", "group_name": "info"}, {"name": "Info-de", "group_name": "info"}],
        "per_queue_groups": [{"name": "queue:Press"}, {"name": "queue:Raw"}],
    }
    profiles = compute_profiles(sources)
    assert profiles["root"]["readable_queues"] == ["Info-de", "Info-en", "Press", "Raw"]
    assert profiles["ro_info"] == {
        "agent": "ro_info",
        "email": None,
        "name": "",
        "valid": True,
        "language": "de",
        "notifications": [k for k in ALL_ON if k != "new_ticket"],
        "my_queues": ["Info-en"],
        "readable_queues": ["Info-de", "Info-en"],
    }
    assert profiles["via_role"]["readable_queues"] == ["Press"] and profiles["via_role"]["valid"] is False
    assert profiles["via_role"]["email"] == "r@x.example" and profiles["via_role"]["name"] == "R"
    assert profiles["nothing"]["readable_queues"] == []


# --------------------------------------------------------------------------- the API


async def test_preferences_api(gateway: httpx.AsyncClient, gw_settings: GatewaySettings) -> None:
    await login(gateway)
    await configure_queues(gw_settings, gateway, {"Raw": "users", "Press": "press"})
    await create_agent(gateway, "pia", {"Raw": ["ro"]}, email="pia@firstline.example")
    async with other_client(gateway) as pia:
        token = await login(pia, "pia", PASSWORD)
        assert (await pia.get("/api/me/preferences")).json() == DEFAULTS

        # partial update with the session (CSRF header needed)
        assert (await pia.put("/api/me/preferences", json={"language": "de"})).status_code == 403
        response = await pia.put("/api/me/preferences", json={"language": "de"}, headers=csrf(pia))
        assert response.status_code == 200, response.text
        assert response.json() == {**DEFAULTS, "language": "de"}

        # partial update with the bearer token: other keys stay
        body = {"notifications": {"new_ticket": False}, "my_queues": ["Raw"]}
        response = await pia.put("/api/me/preferences", json=body, headers=bearer(token))
        assert response.status_code == 200, response.text
        expected = {"language": "de", "notifications": {**ALL_ON, "new_ticket": False}, "my_queues": ["Raw"]}
        assert response.json() == expected
        assert (await pia.get("/api/me/preferences")).json() == expected

        # 422s naming the field, nothing changed
        for bad, field in [
            ({"language": "fr"}, "language"),
            ({"notifications": {"birthday": True}}, "notifications.birthday"),
            ({"notifications": {"follow_up": "yes"}}, "notifications.follow_up"),
            ({"my_queues": ["Press"]}, "my_queues[0]"),  # exists, but pia may not read it
            ({"my_queues": ["Nowhere"]}, "my_queues[0]"),
            ({"colour": "blue"}, "colour"),
        ]:
            response = await pia.put("/api/me/preferences", json=bad, headers=bearer(token))
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["field"] == field, response.json()
        assert (await pia.get("/api/me/preferences")).json() == expected

    # unauthenticated
    async with other_client(gateway) as anonymous:
        assert (await anonymous.get("/api/me/preferences")).status_code == 401

    # the change is in the admin audit log
    audit = (await gateway.get("/api/admin/audit", params={"page_size": 100})).json()["items"]
    changes = [a for a in audit if a["action"] == "agent.preferences" and a["target"] == "agent:pia"]
    assert [c["detail"] for c in reversed(changes)] == [
        {"language": "de"},
        {"notifications": {**ALL_ON, "new_ticket": False}, "my_queues": ["Raw"]},
    ]
    assert all(c["actor"] == "pia" for c in changes)


# --------------------------------------------------------------------------- the directory


def profiles_of(reader: TopicReader, agent: str) -> list[Envelope]:
    return reader.of_type(AgentProfileChanged, agent=agent)


async def latest(reader: TopicReader, agent: str, **expected: Any) -> Envelope:
    """Wait until the latest published profile of ``agent`` has the expected fields."""

    async def check() -> Envelope | None:
        found = sorted(profiles_of(reader, agent), key=lambda e: e.stream_version)
        if found and all(found[-1].data.get(k) == v for k, v in expected.items()):
            return found[-1]
        return None

    return await eventually(check, timeout=60)


async def test_agent_directory_is_published(gateway: httpx.AsyncClient, gw_settings: GatewaySettings) -> None:
    await login(gateway)
    await configure_queues(gw_settings, gateway, {"Raw": "users", "Info-en": "info", "Info-de": "info"})
    async with reading(gw_settings, TOPIC_AGENT_DIRECTORY) as directory:
        # the first admin was published at start, with every known queue readable
        admin = await latest(directory, "admin", valid=True)
        assert admin.stream_id == "agent:admin" and directory.keys[admin.event_id] == "agent:admin"

        async def admin_reads_all() -> bool:
            last = max(profiles_of(directory, "admin"), key=lambda e: e.stream_version)
            return {"Info-de", "Info-en", "Raw"} <= set(last.data["readable_queues"])

        await eventually(admin_reads_all, timeout=60)

        # create: the profile with the queues granted
        await create_agent(gateway, "quinn", {"Raw": ["rw"]}, email="quinn@firstline.example", full_name="Quinn Q")
        first = await latest(directory, "quinn", readable_queues=["Raw"])
        assert first.data == {
            "agent": "quinn",
            "email": "quinn@firstline.example",
            "name": "Quinn Q",
            "valid": True,
            "language": "en",
            "notifications": list(ALL_ON),
            "my_queues": [],
            "readable_queues": ["Raw"],
        }

        # preferences
        async with other_client(gateway) as quinn:
            token = await login(quinn, "quinn", PASSWORD)
            body = {"my_queues": ["Raw"], "notifications": {"follow_up": False}}
            assert (await quinn.put("/api/me/preferences", json=body, headers=bearer(token))).status_code == 200
        changed = await latest(directory, "quinn", my_queues=["Raw"])
        assert "follow_up" not in changed.data["notifications"]
        assert changed.stream_version > first.stream_version

        # a group grant (ordinary group "info" holds Info-en and Info-de)
        patch = {"groups": {"info": ["ro"]}}
        response = await gateway.patch("/api/admin/agents/quinn", json=patch, headers=csrf(gateway))
        assert response.status_code == 200, response.text
        await latest(directory, "quinn", readable_queues=["Info-de", "Info-en", "Raw"])

        # a role: change the role's grants, the agent's readable queues follow
        response = await gateway.put("/api/admin/roles/press", json={"permissions": {}}, headers=csrf(gateway))
        assert response.status_code == 200, response.text
        patch2 = {"roles": ["press"], "groups": {}}
        assert (await gateway.patch("/api/admin/agents/quinn", json=patch2, headers=csrf(gateway))).status_code == 200
        await latest(directory, "quinn", readable_queues=["Raw"])
        role = {"permissions": {"Press": ["ro"]}}
        assert (await gateway.put("/api/admin/roles/press", json=role, headers=csrf(gateway))).status_code == 200
        await latest(directory, "quinn", readable_queues=["Press", "Raw"])

        # a new queue configured in a group the agent holds
        patch3 = {"groups": {"info": ["ro"]}}
        assert (await gateway.patch("/api/admin/agents/quinn", json=patch3, headers=csrf(gateway))).status_code == 200
        await configure_queues(gw_settings, gateway, {"Info-fr": "info"})
        await latest(directory, "quinn", readable_queues=["Info-de", "Info-en", "Info-fr", "Press", "Raw"])

        # disabled
        response = await gateway.patch("/api/admin/agents/quinn", json={"valid": False}, headers=csrf(gateway))
        assert response.status_code == 200, response.text
        disabled = await latest(directory, "quinn", valid=False)

        # no change, no event: versions are unique and increasing
        versions = [e.stream_version for e in profiles_of(directory, "quinn")]
        assert len(versions) == len(set(versions)) and max(versions) == disabled.stream_version

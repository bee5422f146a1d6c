"""The OTRS permission matrix: every action against every single permission kind."""

from __future__ import annotations

import pytest

from services.gateway.permissions import (
    ACTION_REQUIREMENTS,
    ALL_PERMISSIONS,
    PERMISSIONS,
    AgentAccess,
    InvalidPermissions,
    Queue,
    Role,
    can,
    check,
    effective_permissions,
    may,
    permissions_from_request,
    queue_group_name,
    queue_of_group,
    queue_permissions,
    queues_with,
    visible_queues,
)

RAW = Queue("Raw", "Raw")
JUNK = Queue("Junk", "Junk")
PRESS = Queue("Press", "Press")

# action -> the single permission on the ticket's queue that is enough (besides rw).
EXPECTED_SOURCE = {
    "view": "ro",
    "history": "ro",
    "watch": "ro",
    "create": "create",
    "note": "note",
    "priority": "priority",
    "owner": "owner",
    "lock": "rw",
    "unlock": "rw",
    "answer": "rw",
    "state": "rw",
    "move": "rw",
    "spam": "rw",
    "merge": "rw",
    "unmerge": "rw",
    "split": "rw",
    "title": "rw",
    "phone": "rw",
    "responsible": "rw",
}


def agent(groups: dict[str, set[str]] | None = None, is_admin: bool = False) -> AgentAccess:
    frozen = {group: frozenset(kinds) for group, kinds in (groups or {}).items()}
    return AgentAccess("alice", groups=frozen, is_admin=is_admin)


def test_every_action_is_in_the_matrix() -> None:
    assert set(ACTION_REQUIREMENTS) == set(EXPECTED_SOURCE)


@pytest.mark.parametrize("action", sorted(EXPECTED_SOURCE))
@pytest.mark.parametrize("permission", PERMISSIONS)
def test_action_times_permission(action: str, permission: str) -> None:
    """With only ``permission`` on both queues, exactly the expected kinds (and rw) suffice."""
    who = agent({"Raw": {permission}, "Press": {permission}})
    allowed = may(who, action, RAW, PRESS)
    assert allowed == (permission in (EXPECTED_SOURCE[action], "rw"))


@pytest.mark.parametrize("action", sorted(EXPECTED_SOURCE))
def test_rw_allows_every_action(action: str) -> None:
    who = agent({"Raw": {"rw"}, "Press": {"rw"}})
    assert may(who, action, RAW, PRESS)


@pytest.mark.parametrize("action", sorted(EXPECTED_SOURCE))
def test_no_permission_allows_nothing(action: str) -> None:
    who = agent({"Press": {"rw"}})
    denial = check(who, action, RAW, PRESS)
    assert denial is not None
    assert denial.queue == "Raw"
    assert "Raw" in denial.message and denial.permission in denial.message


def test_rw_implies_all_kinds() -> None:
    assert effective_permissions(agent({"Raw": {"rw"}}), "Raw") == ALL_PERMISSIONS
    for kind in PERMISSIONS:
        assert can(agent({"Raw": {"rw"}}), kind, RAW)


def test_kinds_other_than_rw_imply_nothing_else() -> None:
    for kind in PERMISSIONS[:-1]:
        assert effective_permissions(agent({"Raw": {kind}}), "Raw") == {kind}


def test_move_needs_rw_on_source_and_move_into_on_target() -> None:
    assert may(agent({"Raw": {"rw"}, "Press": {"move_into"}}), "move", RAW, PRESS)
    denial = check(agent({"Raw": {"rw"}, "Press": {"ro"}}), "move", RAW, PRESS)
    assert denial is not None and (denial.queue, denial.permission) == ("Press", "move_into")
    denial = check(agent({"Raw": {"move_into", "ro"}, "Press": {"move_into"}}), "move", RAW, PRESS)
    assert denial is not None and (denial.queue, denial.permission) == ("Raw", "rw")


def test_move_and_merge_need_a_target() -> None:
    with pytest.raises(ValueError, match="target"):
        check(agent({"Raw": {"rw"}}), "move", RAW)
    with pytest.raises(ValueError, match="target"):
        check(agent({"Raw": {"rw"}}), "merge", RAW)


def test_spam_checks_the_junk_queue_only_when_given() -> None:
    who = agent({"Raw": {"rw"}})
    assert may(who, "spam", RAW)
    assert not may(who, "spam", RAW, JUNK)
    assert may(agent({"Raw": {"rw"}, "Junk": {"move_into"}}), "spam", RAW, JUNK)


def test_merge_needs_rw_on_both_tickets_queues() -> None:
    assert not may(agent({"Raw": {"rw"}, "Press": {"ro"}}), "merge", RAW, PRESS)
    assert may(agent({"Raw": {"rw"}, "Press": {"rw"}}), "merge", RAW, PRESS)


def test_owner_permission_does_not_lock() -> None:
    who = agent({"Raw": {"ro", "owner"}})
    assert may(who, "owner", RAW)
    assert not may(who, "lock", RAW)


def test_admin_bypasses_everything() -> None:
    admin = agent(is_admin=True)
    assert effective_permissions(admin, "anything") == ALL_PERMISSIONS
    for action in EXPECTED_SOURCE:
        assert may(admin, action, RAW, PRESS)
    assert visible_queues(admin, [RAW, JUNK, PRESS]) == [RAW, JUNK, PRESS]


def test_roles_grant_group_permissions() -> None:
    volunteers = Role("volunteers", {"Raw": frozenset({"ro", "note"})})
    press_team = Role("press", {"Press": frozenset({"rw"})})
    who = AgentAccess("bob", groups={"Raw": frozenset({"priority"})}, roles=(volunteers, press_team))
    assert effective_permissions(who, "Raw") == {"ro", "note", "priority"}
    assert effective_permissions(who, "Press") == ALL_PERMISSIONS
    assert effective_permissions(who, "Junk") == frozenset()
    assert may(who, "note", RAW) and not may(who, "answer", RAW)
    assert may(who, "answer", PRESS)


def test_queue_permissions_come_from_its_group() -> None:
    shared_group = Queue("Info-de", "Info")
    who = agent({"Info": {"ro"}})
    assert can(who, "ro", shared_group)
    assert not can(who, "ro", Queue("Info", "Other"))


def test_invisible_queues_are_filtered() -> None:
    who = agent({"Raw": {"ro"}, "Junk": {"move_into"}, "Press": {"note"}})
    assert visible_queues(who, [RAW, JUNK, PRESS]) == [RAW]
    assert queues_with(who, "move_into", [RAW, JUNK, PRESS]) == [JUNK]
    assert visible_queues(agent(), [RAW, JUNK, PRESS]) == []


def test_unknown_permission_and_action_raise() -> None:
    with pytest.raises(ValueError):
        can(agent(), "write", RAW)
    with pytest.raises(ValueError):
        may(agent(), "delete", RAW)


def test_permissions_from_request_makes_one_group_per_queue() -> None:
    groups = permissions_from_request({"Raw": ["ro", "note", "ro"], "Press": ["rw"], "Junk": []})
    assert groups == {"queue:Raw": frozenset({"ro", "note"}), "queue:Press": frozenset({"rw"})}
    who = AgentAccess("carol", groups=groups)
    assert visible_queues(who, [RAW, JUNK, PRESS]) == [RAW, PRESS]


def test_per_queue_group_or_configured_group() -> None:
    """A queue's rights come from its configured group and from its own per-queue group."""
    info_en, info_de = Queue("Info-en", "info"), Queue("Info-de", "info")
    per_queue = AgentAccess("dave", groups=permissions_from_request({"Info-en": ["rw"]}))
    assert visible_queues(per_queue, [info_en, info_de]) == [info_en]
    by_group = AgentAccess("erin", groups={"info": frozenset({"ro"})})
    assert visible_queues(by_group, [info_en, info_de]) == [info_en, info_de]
    both = AgentAccess("fay", groups={"info": frozenset({"ro"}), "queue:Info-de": frozenset({"note"})})
    assert queue_permissions(both, info_de) == {"ro", "note"}
    assert queue_permissions(both, info_en) == {"ro"}


def test_per_queue_groups_do_not_collide_with_configured_groups() -> None:
    """A grant on queue "info" is not a grant on the group "info" that Info-en belongs to."""
    who = AgentAccess("gus", groups=permissions_from_request({"info": ["rw"]}))
    assert not can(who, "ro", Queue("Info-en", "info"))
    assert can(who, "rw", Queue("info", "other"))


def test_unconfigured_queue_has_only_its_per_queue_group() -> None:
    who = AgentAccess("hal", groups=permissions_from_request({"New": ["ro"]}))
    assert can(who, "ro", Queue("New", ""))
    assert not can(AgentAccess("ida", groups={"": frozenset({"rw"})}), "ro", Queue("New", ""))


def test_queue_group_names_round_trip() -> None:
    assert queue_group_name("Raw") == "queue:Raw"
    assert queue_of_group("queue:Raw") == "Raw"
    assert queue_of_group("users") is None


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"Raw": ["ro", "write"]}, "permissions.Raw[1]"),
        ({"Raw": "rw"}, "permissions.Raw"),
        ({"": ["ro"]}, "permissions"),
        (["Raw"], "permissions"),
    ],
)
def test_permissions_from_request_names_the_bad_field(request_body: object, field: str) -> None:
    with pytest.raises(InvalidPermissions) as info:
        permissions_from_request(request_body)  # type: ignore[arg-type]
    assert info.value.field == field

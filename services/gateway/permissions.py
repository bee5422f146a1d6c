"""Who may see and do what, OTRS style. Pure functions; no database.

The model is OTRS's:

* Every queue belongs to exactly one **group**; many queues may share a group.
* An agent holds a set of **permissions** per group, directly or through **roles** (a role is
  a named bundle of group permissions; an agent's rights on a group are the union of the
  direct grant and every role's grant).
* The permission kinds are ``ro`` (see the queue and its tickets), ``move_into`` (move tickets
  into the queue), ``create`` (create tickets in it), ``note`` (add notes), ``owner`` (change
  the owner), ``priority`` (change the priority) and ``rw`` (full access, implies every other
  kind).
* ``is_admin`` bypasses every check (Firstline's administrators, not OTRS's ``admin`` group,
  which in OTRS only opens the admin screens).

How the project maps queues to groups. Two kinds of group grant rights on a queue:

* its **configured group**, ``QueueConfigured.group`` (tickets owns queues; several queues may
  share one, e.g. Info-en and Info-de in ``info``), the OTRS way; and
* its **per-queue group**, ``queue:<queue name>`` (``queue_group_name``), which exists only for
  that one queue. The admin API's ``{queue: [permissions]}`` (``permissions_from_request``) is
  stored as grants on per-queue groups, so "rw on Raw" means exactly that queue, whatever
  group Raw is configured in.

An agent's rights on a queue are the union of both (``queue_permissions``). The ``queue:``
prefix keeps the two namespaces apart: a grant on the queue "Info" never opens the queues
whose configured group happens to be called "Info". A queue whose ``QueueConfigured`` has not
arrived yet has the group ``""`` and only its per-queue group applies.

Actions and what they need (``ACTION_REQUIREMENTS``), following OTRS's frontend modules.
OTRS asks ``TicketPermission(Type => X)``; a type that is not one of the seven kinds above
(``lock``, ``move``, ``close``, ``compose``, ``pending``) is granted only by ``rw``.

========  ==================  =====================================  ===========================
action    ticket's queue      other queue                            OTRS module (permission type)
========  ==================  =====================================  ===========================
view      ro                                                         AgentTicketZoom (ro)
history   ro                                                         AgentTicketHistory (ro)
watch     ro                                                         AgentTicketWatcher (ro)
create    create              (the queue is the new ticket's)        AgentTicketPhone (create)
note      note                                                       AgentTicketNote (note)
priority  priority                                                   AgentTicketPriority (priority)
owner     owner                                                      AgentTicketOwner (owner)
lock      rw                                                         AgentTicketLock (lock)
unlock    rw                                                         AgentTicketLock (lock)
answer    rw                                                         AgentTicketCompose (compose)
state     rw                                                         AgentTicketClose/-Pending
move      rw                  move_into on the destination           AgentTicketMove (move), and
                                                                     MoveQueueList (move_into)
spam      rw                  move_into on the junk queue, if given  a move to the junk queue
merge     rw                  rw on the surviving ticket's queue     AgentTicketMerge (rw)
unmerge   rw                                                         (Firstline: undo a merge)
split     rw                                                         AgentLinkObject/split (rw)
title     rw                                                         AgentTicketTitle (title)
phone     rw                                                         AgentTicketPhoneOutbound
========  ==================  =====================================  ===========================

``responsible`` (set the responsible agent, AgentTicketResponsible) needs ``rw`` as well.

OTRS's ``owner`` permission does *not* let an agent lock a ticket: it lets them set the owner
(which does not lock). Rules that depend on the ticket rather than the agent's rights (only the
lock holder may act on a locked ticket, only the owner may unlock) belong to the tickets service.
OTRS's ``OwnerCheck`` (the owner of a ticket keeps access to it in a queue they have no rights
on) is deliberately not modelled: an agent never sees a ticket outside their groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

Permission = Literal["ro", "move_into", "create", "note", "owner", "priority", "rw"]
PERMISSIONS: tuple[Permission, ...] = ("ro", "move_into", "create", "note", "owner", "priority", "rw")
ALL_PERMISSIONS: frozenset[str] = frozenset(PERMISSIONS)
QUEUE_GROUP_PREFIX = "queue:"  # per-queue groups: "queue:<queue name>"
NO_PERMISSIONS: frozenset[str] = frozenset()

Action = Literal[
    "view",
    "history",
    "watch",
    "create",
    "note",
    "priority",
    "owner",
    "lock",
    "unlock",
    "answer",
    "state",
    "move",
    "spam",
    "merge",
    "unmerge",
    "split",
    "title",
    "phone",
    "responsible",
]

GroupPermissions = Mapping[str, frozenset[str]]


class QueueLike(Protocol):
    """Anything with a queue name and the group the queue belongs to."""

    @property
    def name(self) -> str: ...

    @property
    def group(self) -> str: ...


Q = TypeVar("Q", bound=QueueLike)


@dataclass(frozen=True)
class Queue:
    name: str
    group: str


@dataclass(frozen=True)
class Role:
    name: str
    groups: GroupPermissions = field(default_factory=dict)


@dataclass(frozen=True)
class AgentAccess:
    """An agent's rights as loaded at login (or per request): direct grants, roles, admin flag."""

    username: str
    groups: GroupPermissions = field(default_factory=dict)
    roles: tuple[Role, ...] = ()
    is_admin: bool = False


@dataclass(frozen=True)
class Requirement:
    """What an action needs: a permission on the ticket's queue and, for some, on another queue."""

    on_queue: Permission
    on_target: Permission | None = None
    target_required: bool = False


ACTION_REQUIREMENTS: Mapping[str, Requirement] = {
    "view": Requirement("ro"),
    "history": Requirement("ro"),
    "watch": Requirement("ro"),
    "create": Requirement("create"),
    "note": Requirement("note"),
    "priority": Requirement("priority"),
    "owner": Requirement("owner"),
    "lock": Requirement("rw"),
    "unlock": Requirement("rw"),
    "answer": Requirement("rw"),
    "state": Requirement("rw"),
    "move": Requirement("rw", "move_into", target_required=True),
    "spam": Requirement("rw", "move_into"),
    "merge": Requirement("rw", "rw", target_required=True),
    "unmerge": Requirement("rw"),
    "split": Requirement("rw"),
    "title": Requirement("rw"),
    "phone": Requirement("rw"),
    "responsible": Requirement("rw"),
}


@dataclass(frozen=True)
class Denial:
    """Why an action is refused; ``message`` is fit for a 403 body."""

    action: str
    queue: str
    permission: str

    @property
    def message(self) -> str:
        return f"'{self.action}' needs '{self.permission}' permission on queue '{self.queue}'"


class InvalidPermissions(ValueError):
    """The admin API's permission map is malformed; ``field`` names the offending entry."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def effective_permissions(agent: AgentAccess, queue_group: str) -> frozenset[str]:
    """The agent's permissions on a group: direct plus roles, with ``rw`` expanded to all kinds."""
    if agent.is_admin:
        return ALL_PERMISSIONS
    granted = set(agent.groups.get(queue_group, NO_PERMISSIONS))
    for role in agent.roles:
        granted |= role.groups.get(queue_group, NO_PERMISSIONS)
    if "rw" in granted:
        return ALL_PERMISSIONS
    return frozenset(granted & ALL_PERMISSIONS)


def queue_permissions(agent: AgentAccess, queue: QueueLike) -> frozenset[str]:
    """The agent's permissions on a queue: its configured group's plus its per-queue group's."""
    own = effective_permissions(agent, queue_group_name(queue.name))
    if not queue.group or own == ALL_PERMISSIONS:
        return own
    return own | effective_permissions(agent, queue.group)


def can(agent: AgentAccess, permission: str, queue: QueueLike) -> bool:
    """Whether the agent holds ``permission`` on ``queue``. Unknown kinds raise (they are typos)."""
    _check_kind(permission)
    return permission in queue_permissions(agent, queue)


def queues_with(agent: AgentAccess, permission: str, queues: Iterable[Q]) -> list[Q]:
    """The queues on which the agent holds ``permission``, in the given order."""
    _check_kind(permission)
    return [q for q in queues if permission in queue_permissions(agent, q)]


def visible_queues(agent: AgentAccess, queues: Iterable[Q]) -> list[Q]:
    """The queues the agent may see (``ro``); everything else must not leak, not even a count."""
    return queues_with(agent, "ro", queues)


def check(agent: AgentAccess, action: str, queue: QueueLike, target: QueueLike | None = None) -> Denial | None:
    """None if the agent may do ``action`` on a ticket in ``queue``, else the rule that fails.

    ``target`` is the destination queue for ``move`` (and ``spam`` when it moves the ticket to
    the junk queue) and the queue of the surviving ticket for ``merge``.
    """
    requirement = _requirement(action)
    if requirement.target_required and target is None:
        raise ValueError(f"action {action!r} needs a target queue")
    if not can(agent, requirement.on_queue, queue):
        return Denial(action, queue.name, requirement.on_queue)
    if requirement.on_target and target is not None and not can(agent, requirement.on_target, target):
        return Denial(action, target.name, requirement.on_target)
    return None


def may(agent: AgentAccess, action: str, queue: QueueLike, target: QueueLike | None = None) -> bool:
    return check(agent, action, queue, target) is None


def permissions_from_request(request: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Turn the admin API's ``{queue: [permissions]}`` into ``{group: permissions}``.

    One per-queue group per queue (``queue_group_name``). Queues with an empty list are
    dropped (no rights). Raises :class:`InvalidPermissions` naming the bad entry.
    """
    if not isinstance(request, Mapping):
        raise InvalidPermissions("permissions", "must be an object mapping queue names to lists")
    groups: dict[str, frozenset[str]] = {}
    for queue, kinds in request.items():
        if not isinstance(queue, str) or not queue.strip():
            raise InvalidPermissions("permissions", "queue names must be non-empty strings")
        granted = _parse_kinds(f"permissions.{queue}", kinds)
        if granted:
            groups[queue_group_name(queue)] = granted
    return groups


def group_grants_from_request(request: Mapping[str, Sequence[str]], field: str = "groups") -> dict[str, frozenset[str]]:
    """Validate ``{group: [permissions]}`` for ordinary groups (the per-queue prefix is reserved)."""
    if not isinstance(request, Mapping):
        raise InvalidPermissions(field, "must be an object mapping group names to lists")
    groups: dict[str, frozenset[str]] = {}
    for group, kinds in request.items():
        if not isinstance(group, str) or not group.strip():
            raise InvalidPermissions(field, "group names must be non-empty strings")
        if queue_of_group(group) is not None:
            raise InvalidPermissions(f"{field}.{group}", f"'{QUEUE_GROUP_PREFIX}' names are per-queue groups")
        granted = _parse_kinds(f"{field}.{group}", kinds)
        if granted:
            groups[group] = granted
    return groups


def queue_group_name(queue: str) -> str:
    """The per-queue group of a queue: rights granted queue by queue live there."""
    return f"{QUEUE_GROUP_PREFIX}{queue}"


def queue_of_group(group: str) -> str | None:
    """The queue a per-queue group stands for, or None for an ordinary group."""
    return group[len(QUEUE_GROUP_PREFIX) :] if group.startswith(QUEUE_GROUP_PREFIX) else None


def _parse_kinds(field: str, kinds: object) -> frozenset[str]:
    if isinstance(kinds, str) or not isinstance(kinds, Sequence):
        raise InvalidPermissions(field, "must be a list of permissions")
    for index, kind in enumerate(kinds):
        if kind not in ALL_PERMISSIONS:
            raise InvalidPermissions(
                f"{field}[{index}]",
                f"unknown permission {kind!r}; expected one of {', '.join(PERMISSIONS)}",
            )
    return frozenset(kinds)


def _requirement(action: str) -> Requirement:
    try:
        return ACTION_REQUIREMENTS[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}") from None


def _check_kind(permission: str) -> None:
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

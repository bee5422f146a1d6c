"""The agent's desk: queues, ticket lists, zoom, history, actions, search, templates, audit.

Every read goes through the agent's visible queues and every action through
``permissions.check`` before tickets is asked. A ticket the agent may not see answers exactly
like a ticket that does not exist (404 ``ticket_not_found``); an invisible queue like an
unknown one. The ticket's queue for a check is the one tickets reports now, not a cached one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any, Literal

import asyncpg
import nh3
import orjson
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import store
from services.gateway.accounts import Principal
from services.gateway.directory import QueueDirectory
from services.gateway.errors import ApiError, PassThrough, forbidden, queue_not_found, ticket_not_found
from services.gateway.permissions import (
    PERMISSIONS,
    AgentAccess,
    Denial,
    Permission,
    Queue,
    Role,
    check,
    queue_permissions,
)
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import Upstream
from shared.ticket_numbers import ticket_hook

logger = logging.getLogger(__name__)

# POST /api/tickets/{number}/<command> → the action permissions.check knows it as.
COMMAND_ACTIONS: dict[str, str] = {
    "lock": "lock",
    "unlock": "unlock",
    "answer": "answer",
    "note": "note",
    "phone": "phone",
    "move": "move",
    "state": "state",
    "priority": "priority",
    "owner": "owner",
    "responsible": "responsible",
    "title": "title",
    "merge": "merge",
    "unmerge": "unmerge",
    "split": "split",
    "spam": "spam",
    "watch": "watch",
    "unwatch": "watch",
}


class TicketQuery(BaseModel):
    """``GET /api/tickets`` filters. ``owner=me`` and ``watched=true`` mean the calling agent."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(None, description="one queue, or several separated by commas")
    state: str | None = None
    owner: str | None = None
    locked: bool | None = None
    watched: bool | None = None
    sort: str | None = None
    order: Literal["asc", "desc"] | None = None
    page: int = Field(1, ge=1)
    page_size: int = Field(25, ge=1, le=500)


def page_of(items: list[Any], page: int = 1, page_size: int | None = None) -> dict[str, Any]:
    """A list answer ``{total, items, page, page_size}`` over an in-memory list."""
    size = page_size or max(len(items), 1)
    start = (page - 1) * size
    return {"total": len(items), "items": items[start : start + size], "page": page, "page_size": size}


def empty_page(page: int, page_size: int) -> dict[str, Any]:
    return {"total": 0, "items": [], "page": page, "page_size": page_size}


def _keep_remote_images_out(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src" and not value.startswith(("data:", "cid:")):
        return None
    return value


def sanitise_html(html: str) -> str:
    """A mail's HTML as the UI may show it (in a sandboxed frame): no scripts, no remote images."""
    return nh3.clean(html, attribute_filter=_keep_remote_images_out)


def sanitise_ticket(ticket: dict[str, Any]) -> dict[str, Any]:
    for article in ticket.get("articles") or []:
        if isinstance(article, dict) and article.get("body_html"):
            article["body_html"] = sanitise_html(article["body_html"])
    return ticket


# Commands on one ticket whose permission depends on its queue alone: tickets checks the queue
# guard on them. The others (move, spam, merge: a second queue; unmerge, split: two tickets)
# are checked here before they are forwarded.
_GUARDED_COMMANDS = frozenset(
    {
        "lock",
        "unlock",
        "answer",
        "note",
        "phone",
        "state",
        "priority",
        "owner",
        "responsible",
        "title",
        "watch",
        "unwatch",
    }
)
_GUARD_REFUSALS = frozenset({"queue_not_permitted", "ticket_not_found"})


def _command_answer(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {"ok": True}
    for value in result.values():  # the ticket, and a split-off or merge target's zoom
        if isinstance(value, dict) and "articles" in value:
            sanitise_ticket(value)
    return result


@dataclass
class Desk:
    settings: GatewaySettings
    pool: asyncpg.Pool
    upstream: Upstream

    _directory: QueueDirectory | None = field(default=None, init=False, repr=False)
    _directory_loaded: float = field(default=0.0, init=False, repr=False)

    async def directory(self) -> QueueDirectory:
        """The queue → group table, re-read at most every ``directory_cache_seconds``."""
        now = time.monotonic()
        if self._directory is None or now - self._directory_loaded >= self.settings.directory_cache_seconds:
            self._directory = await QueueDirectory.load(self.pool)
            self._directory_loaded = now
        return self._directory

    # ------------------------------------------------------------------ queues

    async def queues(
        self, agent: Principal, permission: Permission = "ro", page: int = 1, page_size: int | None = None
    ) -> dict[str, Any]:
        """Queues with ``permission`` (default ``ro``), with counts only where the agent has ``ro``."""
        directory = await self.directory()
        data = await self.upstream.call("tickets", "GET", "/queues", actor=agent.username)
        items: list[dict[str, Any]] = []
        for item in (data or {}).get("items", []):
            queue = directory.queue(item["name"], str(item.get("group") or ""))
            granted = queue_permissions(agent.access, queue)
            if permission not in granted:
                continue
            shown = dict(item)
            shown["permissions"] = [p for p in PERMISSIONS if p in granted]
            if "ro" not in granted:
                for key in ("counts", "total", "open", "locked"):
                    shown.pop(key, None)
            items.append(shown)
        return page_of(items, page, page_size)

    async def counters(self, agent: Principal) -> dict[str, int | None]:
        """The header counters: my locked tickets, my watched tickets, new tickets (visible queues)."""
        directory = await self.directory()
        queues = directory.names_with(agent)
        if not queues:
            return {"locked": 0, "watched": 0, "new": 0}
        base = {"queues": ",".join(queues), "page": 1, "page_size": 1}
        asks = {
            "locked": {**base, "owner": agent.username, "locked": "true"},
            "watched": {**base, "watched_by": agent.username},
            "new": {**base, "state": "new"},
        }
        results = await asyncio.gather(
            *(self.upstream.call("tickets", "GET", "/tickets", actor=agent.username, params=p) for p in asks.values()),
            return_exceptions=True,
        )
        counters: dict[str, int | None] = {}
        for name, result in zip(asks, results, strict=True):
            counters[name] = None if isinstance(result, BaseException) else int(result.get("total", 0))
        return counters

    # ------------------------------------------------------------------ tickets

    async def list_tickets(self, agent: Principal, query: TicketQuery) -> dict[str, Any]:
        directory = await self.directory()
        visible = directory.names_with(agent)
        if query.queue:
            wanted = {name.strip() for name in query.queue.split(",") if name.strip()}
            visible = [name for name in visible if name in wanted]
        if not visible:
            return empty_page(query.page, query.page_size)
        params: dict[str, Any] = {
            "queues": ",".join(visible),
            "state": query.state,
            "owner": agent.username if query.owner == "me" else query.owner,
            "locked": None if query.locked is None else str(query.locked).lower(),
            "watched_by": agent.username if query.watched else None,
            "sort": query.sort,
            "order": query.order,
            "page": query.page,
            "page_size": query.page_size,
        }
        data = await self.upstream.call("tickets", "GET", "/tickets", actor=agent.username, params=params)
        return self._only_visible(data, set(visible))

    def _only_visible(self, data: dict[str, Any], visible: set[str]) -> dict[str, Any]:
        """Defence in depth: drop any item outside the queues asked for (tickets should not send one)."""
        items = data.get("items", [])
        kept = [item for item in items if item.get("queue") in visible]
        if len(kept) != len(items):
            logger.error("tickets answered %d items outside the requested queues", len(items) - len(kept))
            data = {**data, "items": kept, "total": max(0, int(data.get("total", 0)) - (len(items) - len(kept)))}
        return data

    async def visible_ticket(
        self,
        agent: Principal,
        number: str,
        directory: QueueDirectory | None = None,
        field: str | None = None,
        *,
        articles: bool = False,
    ) -> tuple[dict[str, Any], Queue]:
        """The ticket (its fields; with ``articles``, the whole zoom) and its queue, or 404 if it
        does not exist or the agent may not see it."""
        directory = directory or await self.directory()
        ticket = await self.upstream.find(
            "tickets", f"/tickets/{_segment(number)}", actor=agent.username, params={"articles": articles}
        )
        if not ticket:
            raise ticket_not_found(number, field)
        queue = directory.queue(str(ticket.get("queue", "")))
        if "ro" not in queue_permissions(agent.access, queue):
            raise ticket_not_found(number, field)
        return ticket, queue

    async def zoom(self, agent: Principal, number: str) -> dict[str, Any]:
        ticket, queue = await self.visible_ticket(agent, number, articles=True)
        granted = queue_permissions(agent.access, queue)
        ticket["watched"] = agent.username in (ticket.get("watchers") or [])
        ticket["permissions"] = [p for p in PERMISSIONS if p in granted]
        return sanitise_ticket(ticket)

    async def history(self, agent: Principal, number: str, at: str | None) -> dict[str, Any]:
        _, queue = await self.visible_ticket(agent, number)
        self._require(agent, "history", queue)
        data = await self.upstream.call(
            "tickets", "GET", f"/tickets/{_segment(number)}/history", actor=agent.username, params={"at": at}
        )
        if isinstance(data.get("ticket"), dict):
            sanitise_ticket(data["ticket"])
        return data

    async def command(self, agent: Principal, number: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Check the agent may, then forward the command to tickets (its 4xx are handed on).

        A command on one ticket carries the queues where the agent may see tickets and where
        it may do this: tickets checks them on the ticket in the command's own transaction (no
        separate read, no moment between check and act). A refusal is answered by the full
        check below, for its precise message.
        """
        action = COMMAND_ACTIONS[command]
        directory = await self.directory()
        if command in _GUARDED_COMMANDS:
            guarded = await self._guarded_command(agent, number, command, action, body, directory)
            if guarded is not None:
                return guarded
        ticket, queue = await self.visible_ticket(agent, number, directory)
        target: Queue | None = None
        if command == "move":
            target = directory.queue(str(body["queue"]))
        elif command == "spam" and self.settings.junk_queue in directory.groups:
            target = directory.queue(self.settings.junk_queue)
        elif command == "merge":
            _, target = await self.visible_ticket(agent, str(body["into"]), directory, field="into")
        self._require(agent, action, queue, target)
        return _command_answer(await self._forward(agent, number, command, body))

    async def _guarded_command(
        self, agent: Principal, number: str, command: str, action: str, body: dict[str, Any], directory: QueueDirectory
    ) -> dict[str, Any] | None:
        """The command with its queue guard; None if tickets refused it for the queue (or found
        no ticket), for :meth:`command` to explain."""
        readable = directory.names_with(agent)
        permitted = [name for name in readable if check(agent.access, action, directory.queue(name)) is None]
        guard = {
            "X-Readable-Queues": orjson.dumps(readable).decode(),
            "X-Permitted-Queues": orjson.dumps(permitted).decode(),
        }
        try:
            result = await self._forward(agent, number, command, body, guard)
        except PassThrough as refused:
            if refused.status in (403, 404) and refused.error in _GUARD_REFUSALS:
                return None
            raise
        return _command_answer(result)

    async def _forward(
        self, agent: Principal, number: str, command: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Any:
        path = f"/tickets/{_segment(number)}/{command}"
        return await self.upstream.call("tickets", "POST", path, actor=agent.username, json=body, headers=headers)

    def _require(self, agent: Principal, action: str, queue: Queue, target: Queue | None = None) -> None:
        denial = check(agent.access, action, queue, target)
        if denial is not None:
            raise _forbidden(denial)

    async def create_ticket(self, agent: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """A phone or email ticket by the agent (checked by :func:`new_ticket_problem`), made by tickets."""
        directory = await self.directory()
        queue = directory.queue(str(body["queue"]))
        owner: str | None = body.get("owner") or None
        owner_access: AgentAccess | None = None
        if owner and owner.lower() == agent.username.lower():
            owner = agent.username
        elif owner and "create" in queue_permissions(agent.access, queue):
            owner_access = await self.agent_access(owner)
            owner = owner_access.username if owner_access else owner
        problem = new_ticket_problem(
            agent.access, queue, lock=bool(body.get("lock")), owner=owner, owner_access=owner_access
        )
        if problem is not None:
            raise problem
        if owner:
            body = {**body, "owner": owner}
        result = await self.upstream.call("tickets", "POST", "/tickets", actor=agent.username, json=body)
        return result if isinstance(result, dict) else {}

    async def agent_access(self, username: str) -> AgentAccess | None:
        """Another agent's rights (direct and through roles), or None if no valid agent has that name."""
        row = await store.agent_by_username(self.pool, username)
        if row is None or not row["valid"]:
            return None
        grants = await store.grants_of(self.pool, [row["id"]])
        role_names = {r["role_name"] for r in await store.roles_of(self.pool, [row["id"]])}
        roles = tuple(
            Role(r["name"], {g: frozenset(kinds) for g, kinds in (r["groups"] or {}).items()})
            for r in (await store.list_roles(self.pool) if role_names else [])
            if r["name"] in role_names
        )
        groups = {g["group_name"]: frozenset(g["permissions"]) for g in grants}
        return AgentAccess(row["username"], groups=groups, roles=roles, is_admin=row["is_admin"])

    async def answer_preview(self, agent: Principal, number: str, answer: dict[str, Any]) -> dict[str, Any]:
        """The answer as notify would send it (salutation, text, signature); needs what answering needs."""
        ticket, queue = await self.visible_ticket(agent, number, articles=True)  # the customer's name
        self._require(agent, "answer", queue)
        request = preview_request(ticket, answer, agent.username)
        result = await self.upstream.call("notify", "POST", "/api/preview", actor=agent.username, json=request)
        return result if isinstance(result, dict) else {}

    # ------------------------------------------------------------------ search, templates, audit

    async def search(self, agent: Principal, q: str, page: int, page_size: int) -> dict[str, Any]:
        directory = await self.directory()
        visible = directory.names_with(agent)
        if not visible:
            return empty_page(page, page_size)
        params = {"q": q, "queues": ",".join(visible), "page": page, "page_size": page_size}
        data = await self.upstream.call("tickets", "GET", "/search", actor=agent.username, params=params)
        return self._only_visible(data, set(visible))

    async def templates(self, agent: Principal, queue: str | None, ticket: str | None) -> dict[str, Any]:
        """Templates for a queue (or a ticket's queue) the agent sees; without either, every
        template not bound only to queues the agent cannot see."""
        directory = await self.directory()
        if ticket:
            found, found_queue = await self.visible_ticket(agent, ticket, directory, field="ticket")
            queue = found_queue.name
        elif queue and not directory.may_see(agent, queue):
            raise queue_not_found(queue)
        data = await self.upstream.call("tickets", "GET", "/templates", actor=agent.username, params={"queue": queue})
        visible = set(directory.names_with(agent))
        items = [
            item
            for item in (data or {}).get("items", [])
            if not item.get("queues") or visible.intersection(item["queues"])
        ]
        return page_of(items)

    async def audit_verify(self, agent: Principal) -> dict[str, Any]:
        if not agent.has("audit"):
            raise forbidden("verifying the audit chain needs the 'audit' permission")
        return await self.upstream.call("tickets", "GET", "/audit/verify", actor=agent.username)


# --------------------------------------------------------------------------- new tickets, answer preview


def new_ticket_problem(
    agent: AgentAccess, queue: Queue, *, lock: bool, owner: str | None, owner_access: AgentAccess | None
) -> ApiError | None:
    """Why the agent may not create this ticket (OTRS AgentTicketPhone/-Email), or None.

    * ``create`` on the queue (403; a queue the agent cannot see answers like one that does not
      exist, since both lack the permission);
    * ``lock: true`` is a lock, so it needs ``rw`` there too (403);
    * another agent as owner needs the ``owner`` permission (403), and that agent must be a valid
      agent who sees the queue, and holds ``rw`` there if the ticket is locked to them (422,
      ``invalid_owner``).
    """
    denial = check(agent, "create", queue) or (check(agent, "lock", queue) if lock else None)
    if denial is None and owner and owner != agent.username:
        denial = check(agent, "owner", queue)
    if denial is not None:
        return _forbidden(denial)
    if owner and owner != agent.username:
        needed: Permission = "rw" if lock else "ro"
        if owner_access is None or needed not in queue_permissions(owner_access, queue):
            what = "hold the lock of" if lock else "own"
            detail = f"{owner!r} is not an agent who may {what} tickets in {queue.name!r}"
            return ApiError(422, "invalid_owner", detail, field="owner", permission=needed)
    return None


def _forbidden(denial: Denial) -> ApiError:
    return forbidden(denial.message, action=denial.action, queue=denial.queue, permission=denial.permission)


def customer_name_of(ticket: dict[str, Any]) -> str | None:
    """The display name of the customer's latest mail, as tickets puts it into an answer."""
    for article in reversed(ticket.get("articles") or []):
        if article.get("sender_type") == "customer" and article.get("channel", "email") == "email":
            return parseaddr(str(article.get("from") or ""))[0] or None
    return None


def answer_subject(number: str, title: str, subject: str | None = None) -> str:
    """The answer's subject as tickets writes it into ``AnswerSent``: the given one, else ``Re: <title>``,
    with the ticket hook in front unless it is there already (mirrors tickets' ``answer_subject``)."""
    hook = ticket_hook(number)
    text = (subject or "").strip()
    if not text:
        text = title.strip()
        if text.lower().startswith(hook.lower()):
            text = text[len(hook) :].lstrip()
        if not text.lower().startswith("re:"):
            text = f"Re: {text}"
    return text if hook.lower() in text.lower() else f"{hook} {text}"


def preview_request(ticket: dict[str, Any], answer: dict[str, Any], agent_name: str) -> dict[str, Any]:
    """What notify's ``POST /api/preview`` needs, from the zoom and the agent's draft."""
    number = str(ticket.get("number", ""))
    title = str(ticket.get("title") or "")
    to = answer.get("to") or []
    customer = parseaddr(str(to[0]))[1] if to else str(ticket.get("customer_email") or "")
    return {
        "queue": str(ticket.get("queue", "")),
        "ticket_number": number,
        "title": title,
        "customer_name": answer.get("customer_name") or customer_name_of(ticket),
        "customer_email": customer,
        "body": str(answer.get("body") or ""),
        "subject": answer_subject(number, title, answer.get("subject")),
        "agent_name": agent_name,
    }


def _segment(value: str) -> str:
    """A path segment for an internal URL: ticket numbers and ids never contain '/' or '?'."""
    if not value or any(c in value for c in "/?#%\\") or value in (".", ".."):
        raise ApiError(404, "ticket_not_found", f"no ticket {value}")
    return value

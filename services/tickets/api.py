"""The tickets service's internal HTTP API (docs/services.md, "tickets"). Thin: validate the
body (pydantic), call one function, answer; domain errors become 4xx with ``{"error": code,
"detail": text, ...}`` (see :func:`install_error_handlers`).

Commands need ``X-Actor`` (the acting agent, or ``system:<what>``); ``X-Correlation-ID`` and an
optional ``X-Causation-ID`` are copied onto the events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import getaddresses
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from services.tickets import queries, store
from services.tickets.actions import Actions
from services.tickets.commands import Context, Outcome, Tickets
from services.tickets.domain import QueueGuard
from services.tickets.errors import (
    InvalidInput,
    LockedByOther,
    NotLockOwner,
    QueueNotPermitted,
    TicketError,
    TicketIsMerged,
    UnknownQueue,
)
from shared.events import QueueConfigured

# A page beyond this is a 422 naming `page` (its OFFSET would overflow PostgreSQL's bigint).
MAX_PAGE = 1_000_000

# --------------------------------------------------------------------------- errors

_STATUS = {
    "ticket_not_found": 404,
    "mail_not_found": 404,
    "template_not_found": 404,
    "locked_by_other": 409,
    "not_lock_owner": 409,
    "already_locked": 409,
    "not_locked": 409,
    "ticket_merged": 409,
    "ticket_removed": 409,
    "not_merged": 409,
    "ticket_exists": 409,
    "queue_not_permitted": 403,
    "event_not_found": 404,
    "customer_not_found": 404,
    "rebuild_not_found": 404,
    "rebuild_running": 409,
}


def error_body(exc: TicketError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.code, "detail": exc.message}
    if isinstance(exc, LockedByOther | NotLockOwner):
        body["locked_by"] = exc.holder
    if isinstance(exc, InvalidInput):
        body["field"] = exc.field
    if isinstance(exc, UnknownQueue):
        body["field"] = "queue"
    if isinstance(exc, TicketIsMerged):
        body["merged_into"] = exc.into_number
    if isinstance(exc, QueueNotPermitted):
        body["queue"] = exc.queue
    return body


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TicketError)
    async def ticket_error(_: Request, exc: TicketError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=_STATUS.get(exc.code, 422))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ())]
        field = ".".join(loc[1:]) or (loc[0] if loc else "body")
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")} for e in errors]
        return JSONResponse(
            {"error": "invalid_input", "detail": f"{field}: {first.get('msg')}", "field": field, "problems": problems},
            status_code=422,
        )


# --------------------------------------------------------------------------- bodies


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UnlockBody(Body):
    force: bool = False


class OwnerBody(Body):
    owner: str | None


class ResponsibleBody(Body):
    responsible: str | None


class MoveBody(Body):
    queue: str
    reason: str | None = None


class StateBody(Body):
    state: str
    pending_until: datetime | None = None


class PriorityBody(Body):
    priority: int


class TitleBody(Body):
    title: str


class NoteBody(Body):
    body: str
    subject: str = ""


class PhoneBody(Body):
    body: str
    subject: str = ""
    direction: str = "inbound"


class AttachmentRef(Body):
    """An attachment of the ticket's articles: the ingest mail and the MIME part (as the zoom lists them)."""

    mail_id: str
    part: str


class AnswerBody(Body):
    body: str
    attachments: list[AttachmentRef] | None = None
    to: list[str] | None = None
    cc: list[str] = []
    subject: str | None = None
    template: str | None = None
    next_state: str = "open"
    pending_until: datetime | None = None
    customer_name: str | None = None
    agent_name: str | None = None

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, values: list[str] | None) -> list[str] | None:
        return _single_addresses(values)


def _single_addresses(values: list[str] | None) -> list[str] | None:
    """Each one address (``a@b`` or ``Name <a@b>``): else notify could never send the mail."""
    for value in values or []:
        pairs = getaddresses([value])
        if len(pairs) != 1 or "@" not in pairs[0][1].strip("@"):
            raise ValueError(f"not a single email address: {value!r}")
    return values


class CustomerBody(Body):
    email: str
    name: str | None = None


class CreateTicketBody(Body):
    """``POST /tickets``: a phone ticket (the customer called) or an email ticket (the agent
    writes to the customer). Checks beyond shape (queue, address, state) are the domain's."""

    kind: Literal["phone", "email"]
    queue: str
    customer: CustomerBody
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)
    priority: int = 3
    next_state: str = "open"
    pending_until: datetime | None = None
    lock: bool = False
    owner: str | None = None
    to: list[str] | None = Field(default=None, description="email tickets: defaults to the customer")
    cc: list[str] = []
    agent_name: str | None = None

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, values: list[str] | None) -> list[str] | None:
        return _single_addresses(values)

    def command_fields(self) -> dict[str, Any]:
        """The fields of ``CreateByAgent`` this body sets."""
        fields = self.model_dump(exclude={"customer"}, exclude_none=True)
        return {**fields, "customer_email": self.customer.email, "customer_name": self.customer.name}


class MergeBody(Body):
    into: str = Field(description="the number of the ticket to merge into")


class SplitBody(Body):
    article_id: str
    title: str | None = None
    queue: str | None = None


class TemplateBody(Body):
    name: str
    body: str
    queues: list[str] = []


QueueBody: type[BaseModel] = create_model(  # QueueConfigured's fields, the name being in the path
    "QueueBody",
    __base__=Body,
    **{name: (f.annotation, f) for name, f in QueueConfigured.model_fields.items() if name != "name"},  # type: ignore[call-overload]
)


# --------------------------------------------------------------------------- helpers

Json = dict[str, Any]


def _names(value: str | None) -> list[str] | None:
    """``A,B`` → [A, B]; absent → None (no restriction); empty → [] (nothing)."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True, slots=True)
class Command:
    """What a command route needs: the acting agent's context and one connection for it all."""

    actions: Actions
    ctx: Context

    async def answer(self, outcome: Outcome, **others: Outcome) -> Json:
        """``{"version", "ticket"}`` after the command; ``others`` name the other ticket of a
        two-ticket command (merge target, split-off ticket)."""
        conn = self.actions.conn
        assert outcome.ticket is not None
        body = {"version": outcome.version, "ticket": await queries.zoom_by_id(conn, outcome.ticket.ticket_id)}
        for key, other in others.items():
            if other.ticket is not None:
                body[key] = await queries.zoom_by_id(conn, other.ticket.ticket_id)
        return body


async def command(
    request: Request,
    x_actor: Annotated[str | None, Header(alias="X-Actor")] = None,
    x_causation_id: Annotated[str | None, Header(alias="X-Causation-ID")] = None,
    x_readable_queues: Annotated[str | None, Header(alias="X-Readable-Queues")] = None,
    x_permitted_queues: Annotated[str | None, Header(alias="X-Permitted-Queues")] = None,
) -> AsyncIterator[Command]:
    """The dependency of every command: ``X-Actor`` is required.

    ``X-Readable-Queues`` and ``X-Permitted-Queues`` (JSON lists of queue names, both or
    neither): the command is refused, in its own transaction, on a ticket in a queue not
    readable (404) or not permitted (403 ``queue_not_permitted``). The gateway sends them so
    that checking an agent's permission costs no separate read.
    """
    if x_actor is None or not x_actor.strip():
        raise InvalidInput("X-Actor", "header is required: the acting agent's username or system:<what>")
    guard = _queue_guard(x_readable_queues, x_permitted_queues)
    tickets: Tickets = request.app.state.tickets
    async with tickets.pool.acquire() as conn:
        yield Command(Actions(tickets, conn), Context.of(x_actor.strip(), x_causation_id, guard))


def _queue_guard(readable: str | None, permitted: str | None) -> QueueGuard | None:
    if readable is None and permitted is None:
        return None
    names = {"X-Readable-Queues": readable, "X-Permitted-Queues": permitted}
    lists: dict[str, frozenset[str]] = {}
    for header, value in names.items():
        try:
            parsed = orjson.loads(value or "")
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(name, str) for name in parsed):
            raise InvalidInput(header, "header must be a JSON list of queue names, sent with its pair")
        lists[header] = frozenset(parsed)
    return QueueGuard(readable=lists["X-Readable-Queues"], permitted=lists["X-Permitted-Queues"])


Cmd = Annotated[Command, Depends(command)]


def build_router(tickets: Tickets) -> APIRouter:
    """The routes; the app must hold ``tickets`` as ``app.state.tickets`` (see ``app.py``)."""
    router = APIRouter()
    settings = tickets.settings

    def page_size_of(value: int | None) -> int:
        if value is None:
            return settings.default_page_size
        if not 1 <= value <= settings.max_page_size:
            raise InvalidInput("page_size", f"must be 1..{settings.max_page_size}")
        return value

    # ------------------------------------------------------------------ queues and templates

    @router.get("/queues")
    async def list_queues() -> Json:
        return await queries.queue_overview(tickets.pool)

    @router.get("/queues/{name}")
    async def get_queue(name: str) -> Json:
        return await queries.queue(tickets.pool, name)

    @router.put("/queues/{name}")
    async def put_queue(name: str, body: QueueBody, cmd: Cmd) -> Json:  # type: ignore[valid-type]
        config = QueueConfigured(name=name, **body.model_dump())  # type: ignore[attr-defined]
        changed = await cmd.actions.configure_queue(config, cmd.ctx)
        return {**await queries.queue(cmd.actions.conn, name), "changed": changed}

    @router.get("/templates")
    async def list_templates(queue: str | None = None) -> Json:
        return await queries.templates(tickets.pool, queue)

    @router.get("/templates/{template_id}")
    async def get_template(template_id: str) -> Json:
        return await queries.template(tickets.pool, template_id)

    @router.put("/templates/{template_id}")
    async def put_template(template_id: str, body: TemplateBody) -> Json:
        return await queries.put_template(tickets.pool, template_id, body.name, body.body, body.queues)

    @router.delete("/templates/{template_id}")
    async def delete_template(template_id: str) -> Json:
        return {"deleted": await store.delete_template(tickets.pool, template_id)}

    # ------------------------------------------------------------------ reading tickets

    @router.get("/tickets")
    async def list_tickets(
        queues: str | None = None,
        state: str | None = None,
        owner: str | None = None,
        locked: bool | None = None,
        watched_by: str | None = None,
        customer: str | None = None,
        sort: str = "created_at",
        order: str = "desc",
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        page_size: int | None = None,
    ) -> Json:
        if sort not in store.SORT_COLUMNS:
            raise InvalidInput("sort", f"must be one of {', '.join(store.SORT_COLUMNS)}")
        if order not in ("asc", "desc"):
            raise InvalidInput("order", "must be asc or desc")
        f = store.TicketFilter(
            queues=_names(queues),
            states=_names(state),
            owner=owner,
            locked=locked,
            watched_by=watched_by,
            customer=customer,
            sort=sort,
            descending=order == "desc",
            page=page,
            page_size=page_size_of(page_size),
        )
        return await queries.ticket_list(tickets.pool, f)

    @router.get("/tickets/{number}")
    async def get_ticket(number: str, articles: bool = True) -> Json:
        """The zoom; ``articles=false``: the ticket's fields only (a permission check's read)."""
        return await queries.zoom(tickets.pool, number, articles=articles)

    @router.get("/tickets/{number}/history")
    async def get_history(number: str, at: datetime | None = None) -> Json:
        return await queries.history(tickets.pool, tickets.events, number, at)

    @router.get("/tickets/{number}/events.jsonl")
    async def export_events(number: str) -> Response:
        """The ticket's events as JSON Lines, exactly as stored (canonical JSON, with hashes)."""
        lines = await queries.export(tickets.pool, tickets.events, number)
        return Response(lines, media_type="application/x-ndjson")

    @router.get("/mails/{mail_id}")
    async def get_mail(mail_id: str) -> Json:
        return await queries.mail(tickets.pool, mail_id)

    @router.get("/search")
    async def search(
        q: Annotated[str, Query(min_length=1)],
        queues: str | None = None,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        page_size: int | None = None,
    ) -> Json:
        return await queries.search(tickets.pool, q, _names(queues), page, page_size_of(page_size))

    @router.get("/audit/verify")
    async def verify() -> Json:
        return await queries.verify(tickets.events)

    @router.get("/audit/heads")
    async def heads() -> Json:
        return await queries.head_hashes(tickets.events)

    # ------------------------------------------------------------------ commands

    @router.post("/tickets", status_code=201)
    async def create_ticket(
        body: CreateTicketBody,
        cmd: Cmd,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Json:
        outcome = await cmd.actions.create_ticket(body.command_fields(), cmd.ctx, idempotency_key)
        assert outcome.ticket is not None
        first = outcome.ticket.articles[0].article_id if outcome.ticket.articles else None
        return {
            "number": outcome.ticket.number,
            "ticket_id": outcome.ticket.ticket_id,
            "version": outcome.version,
            "article_id": first,
        }

    @router.post("/tickets/{number}/lock")
    async def lock(number: str, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.lock(number, cmd.ctx))

    @router.post("/tickets/{number}/unlock")
    async def unlock(number: str, cmd: Cmd, body: UnlockBody | None = None) -> Json:
        force = body.force if body else False
        return await cmd.answer(await cmd.actions.unlock(number, force, cmd.ctx))

    @router.post("/tickets/{number}/owner")
    async def owner(number: str, body: OwnerBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.set_owner(number, body.owner, cmd.ctx))

    @router.post("/tickets/{number}/responsible")
    async def responsible(number: str, body: ResponsibleBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.set_responsible(number, body.responsible, cmd.ctx))

    @router.post("/tickets/{number}/move")
    async def move(number: str, body: MoveBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.move(number, body.queue, body.reason, cmd.ctx))

    @router.post("/tickets/{number}/state")
    async def state(number: str, body: StateBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.set_state(number, body.state, body.pending_until, cmd.ctx))

    @router.post("/tickets/{number}/priority")
    async def priority(number: str, body: PriorityBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.set_priority(number, body.priority, cmd.ctx))

    @router.post("/tickets/{number}/title")
    async def title(number: str, body: TitleBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.set_title(number, body.title, cmd.ctx))

    @router.post("/tickets/{number}/note")
    async def note(number: str, body: NoteBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.note(number, body.body, body.subject, cmd.ctx))

    @router.post("/tickets/{number}/phone")
    async def phone(number: str, body: PhoneBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.phone(number, body.body, body.subject, body.direction, cmd.ctx))

    @router.post("/tickets/{number}/answer")
    async def answer(number: str, body: AnswerBody, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.answer(number, body.model_dump(exclude_none=True), cmd.ctx))

    @router.post("/tickets/{number}/spam")
    async def spam(number: str, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.mark_spam(number, cmd.ctx))

    @router.post("/tickets/{number}/merge")
    async def merge(number: str, body: MergeBody, cmd: Cmd) -> Json:
        source, target = await cmd.actions.merge(number, body.into, cmd.ctx)
        return await cmd.answer(source, into=target)

    @router.post("/tickets/{number}/unmerge")
    async def unmerge(number: str, cmd: Cmd) -> Json:
        source, target = await cmd.actions.unmerge(number, cmd.ctx)
        return await cmd.answer(source, was_merged_into=target)

    @router.post("/tickets/{number}/split")
    async def split(number: str, body: SplitBody, cmd: Cmd) -> Json:
        source, new = await cmd.actions.split(number, body.article_id, body.title, body.queue, cmd.ctx)
        return await cmd.answer(source, new_ticket=new)

    @router.post("/tickets/{number}/watch")
    async def watch(number: str, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.watch(number, cmd.ctx))

    @router.post("/tickets/{number}/unwatch")
    async def unwatch(number: str, cmd: Cmd) -> Json:
        return await cmd.answer(await cmd.actions.unwatch(number, cmd.ctx))

    return router

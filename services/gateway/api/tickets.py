"""Ticket list, zoom, history, the agent's actions, search and the audit check."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.accounts import Principal
from services.gateway.api.deps import AgentDep, GatewayDep
from services.gateway.desk import TicketQuery
from services.gateway.errors import GatewayRoute
from services.gateway.runtime import Gateway

router = APIRouter(prefix="/api", tags=["tickets"], route_class=GatewayRoute)

Number = Annotated[str, Path(description="the ticket number", max_length=64)]


class Command(BaseModel):
    """Bodies are forwarded to tickets as given; tickets validates the details."""

    model_config = ConfigDict(extra="forbid")


class Empty(Command):
    pass


class Unlock(Command):
    force: bool | None = None


class AttachmentRef(Command):
    """An attachment of one of the ticket's articles, as the zoom lists it (`mail_id`, `part`)."""

    mail_id: str = Field(min_length=1, max_length=200)
    part: str = Field(min_length=1, max_length=100)


class Answer(Command):
    body: str = Field(min_length=1)
    template: str | None = None
    attachments: list[AttachmentRef] | None = Field(default=None, max_length=50)
    to: list[str] | None = None
    cc: list[str] | None = None
    subject: str | None = None
    next_state: str | None = None


class Note(Command):
    body: str = Field(min_length=1)
    subject: str | None = None


class Phone(Command):
    body: str = Field(min_length=1)
    subject: str | None = None
    direction: Literal["inbound", "outbound"] | None = None


class Move(Command):
    queue: str = Field(min_length=1)


class State(Command):
    state: str = Field(min_length=1)
    pending_until: datetime | None = None


class Priority(Command):
    priority: int


class Owner(Command):
    owner: str | None


class Responsible(Command):
    responsible: str | None


class Title(Command):
    title: str = Field(min_length=1)


class Merge(Command):
    into: str = Field(min_length=1, max_length=64)


class Split(Command):
    article_id: str = Field(min_length=1)


class Customer(Command):
    email: str = Field(min_length=3, max_length=320)
    name: str | None = Field(None, max_length=200)


class NewTicket(Command):
    """A phone ticket (the customer called) or an email ticket (the agent writes to the customer)."""

    kind: Literal["phone", "email"]
    queue: str = Field(min_length=1, max_length=200)
    customer: Customer
    subject: str = Field(min_length=1, max_length=1000)
    body: str = Field(min_length=1)
    priority: int = Field(3, ge=1, le=5)
    next_state: str = Field("open", min_length=1)
    pending_until: datetime | None = None
    lock: bool = False
    owner: str | None = Field(None, max_length=200, description="another agent needs the 'owner' permission")
    to: list[str] | None = None
    cc: list[str] | None = None


class AnswerPreview(Command):
    body: str = ""
    subject: str | None = None
    to: list[str] | None = None
    template: str | None = None


@router.post(
    "/tickets",
    status_code=201,
    responses={
        403: {"description": "create (and rw to lock, owner to set another owner) on the queue"},
        404: {},
        409: {},
        422: {},
    },
)
async def create_ticket(body: NewTicket, agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """`{number, ticket_id, version, article_id}`. Needs `create` on the queue; `lock: true` needs `rw`;
    an `owner` other than the caller needs `owner` there and must be an agent who sees the queue."""
    return await gateway.desk.create_ticket(agent, body.model_dump(mode="json", exclude_none=True))


@router.post("/tickets/{number}/answer/preview", responses={403: {}, 404: {}, 409: {}, 422: {}})
async def answer_preview(number: Number, body: AnswerPreview, agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """`{subject, text, html, template_errors}`: the answer with the queue's salutation and signature,
    composed by notify exactly as it would be sent. Needs what answering needs (`rw`)."""
    return await gateway.desk.answer_preview(agent, number, body.model_dump(mode="json", exclude_none=True))


@router.get("/tickets")
async def list_tickets(agent: AgentDep, gateway: GatewayDep, query: Annotated[TicketQuery, Query()]) -> dict[str, Any]:
    """The ticket list of the queues the agent sees (`queue=` narrows it). `owner=me`,
    `watched=true` and `locked=true` filter for the calling agent."""
    return await gateway.desk.list_tickets(agent, query)


@router.get("/tickets/{number}")
async def zoom(number: Number, agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """Ticket fields and every article (HTML bodies sanitised), plus `watched` and the agent's
    `permissions` on its queue. 404 if it does not exist or the agent may not see it."""
    return await gateway.desk.zoom(agent, number)


@router.get("/tickets/{number}/history")
async def history(
    number: Number,
    agent: AgentDep,
    gateway: GatewayDep,
    at: Annotated[str | None, Query(description="ISO-8601 instant; the ticket as it was then")] = None,
) -> dict[str, Any]:
    return await gateway.desk.history(agent, number, at)


async def _run(gateway: Gateway, agent: Principal, number: str, command: str, body: Command) -> dict[str, Any]:
    """Forward what the client sent (``owner: null`` clears the owner; absent fields stay absent)."""
    return await gateway.desk.command(agent, number, command, body.model_dump(mode="json", exclude_unset=True))


def _command_route(command: str, model: type[Command], summary: str) -> None:
    async def run(number: Number, agent: AgentDep, gateway: GatewayDep, body: Any = None) -> Any:
        return await _run(gateway, agent, number, command, body or model())

    # The body's model is only known here: give FastAPI the real annotation (this module's
    # annotations are strings that it would resolve against module globals).
    required = any(f.is_required() for f in model.model_fields.values())
    run.__annotations__["body"] = Annotated[model, Body()] if required else Annotated[model | None, Body()]
    if required:
        run.__defaults__ = None
    run.__name__ = f"ticket_{command}"
    router.add_api_route(
        f"/tickets/{{number}}/{command}",
        run,
        methods=["POST"],
        summary=summary,
        responses={403: {"description": "the agent lacks the permission"}, 404: {}, 409: {}, 422: {}},
    )


for _command, _model, _summary in (
    ("lock", Empty, "Lock (409 naming the holder if someone else has it)"),
    ("unlock", Unlock, "Unlock"),
    ("answer", Answer, "Queue an answer to the customer"),
    ("note", Note, "Add an internal note"),
    ("phone", Phone, "Record a phone call"),
    ("move", Move, "Move to another queue (rw here, move_into there)"),
    ("state", State, "Change the state"),
    ("priority", Priority, "Change the priority"),
    ("owner", Owner, "Change the owner"),
    ("responsible", Responsible, "Change the responsible agent"),
    ("title", Title, "Change the title"),
    ("merge", Merge, "Merge into another ticket"),
    ("unmerge", Empty, "Undo a merge"),
    ("split", Split, "Split an article into a new ticket"),
    ("spam", Empty, "Mark as spam (moves to the junk queue)"),
    ("watch", Empty, "Watch"),
    ("unwatch", Empty, "Stop watching"),
):
    _command_route(_command, _model, _summary)


@router.get("/search")
async def search(
    agent: AgentDep,
    gateway: GatewayDep,
    q: Annotated[str, Query(min_length=1, max_length=500)],
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 25,
) -> dict[str, Any]:
    """Full-text search over the tickets of the queues the agent sees."""
    return await gateway.desk.search(agent, q, page, page_size)


@router.get("/audit/verify")
async def audit_verify(agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """Checks every stream's hash chain (administrators, or agents with the `audit` capability)."""
    return await gateway.desk.audit_verify(agent)

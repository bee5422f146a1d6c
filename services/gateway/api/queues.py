"""Queues the agent may see (with counts) and the answer templates of a queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.gateway.api.deps import AgentDep, GatewayDep
from services.gateway.errors import GatewayRoute
from services.gateway.permissions import Permission

router = APIRouter(prefix="/api", tags=["queues"], route_class=GatewayRoute)


@router.get("/queues")
async def queues(
    agent: AgentDep,
    gateway: GatewayDep,
    permission: Annotated[
        Permission, Query(description="list queues where the agent holds this (move_into: move targets)")
    ] = "ro",
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> dict[str, Any]:
    """`{total, items, page, page_size}`; items as tickets lists them (`counts` by state, `open`,
    `locked`), plus the agent's `permissions` there. Counts only where the agent has `ro`."""
    return await gateway.desk.queues(agent, permission, page, page_size)


@router.get("/templates")
async def templates(
    agent: AgentDep,
    gateway: GatewayDep,
    queue: Annotated[str | None, Query(description="templates usable in this queue")] = None,
    ticket: Annotated[str | None, Query(description="templates usable in this ticket's queue")] = None,
) -> dict[str, Any]:
    return await gateway.desk.templates(agent, queue, ticket)

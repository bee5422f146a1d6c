"""Administration (administrators only): agents, groups, roles, the audit log, and the admin
calls of tickets (queues, templates) and router (system addresses, filters), audited here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from services.gateway import admin
from services.gateway.accounts import Principal
from services.gateway.admin import (
    NAME_PATTERN,
    SEGMENT_PATTERN,
    AgentCreate,
    AgentOut,
    AgentUpdate,
    GroupCreate,
    RoleIn,
)
from services.gateway.api.deps import AdminDep, GatewayDep
from services.gateway.desk import page_of
from services.gateway.errors import GatewayRoute
from services.gateway.runtime import Gateway
from services.gateway.upstream import ServiceName

router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=GatewayRoute)

Username = Annotated[str, Path(max_length=64)]
Page = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=500)]
AnyBody = Annotated[dict[str, Any], Body()]


@router.get("/agents")
async def list_agents(_: AdminDep, gateway: GatewayDep, page: Page = 1, page_size: PageSize = 100) -> dict[str, Any]:
    return await admin.list_agents(gateway.service.db, page, page_size)


@router.post("/agents", status_code=201, response_model=AgentOut)
async def create_agent(spec: AgentCreate, actor: AdminDep, gateway: GatewayDep) -> AgentOut:
    """Creates an agent with `permissions: {queue: [ro, move_into, create, note, owner, priority, rw]}`
    (stored on per-queue groups), optional ordinary `groups`, `roles`, `is_admin`, `capabilities`."""
    return await admin.create_agent(gateway.service.db, gateway.accounts, actor, spec)


@router.get("/agents/{username}", response_model=AgentOut)
async def get_agent(username: Username, _: AdminDep, gateway: GatewayDep) -> AgentOut:
    return await admin.get_agent(gateway.service.db, username)


@router.patch("/agents/{username}", response_model=AgentOut)
async def update_agent(username: Username, change: AgentUpdate, actor: AdminDep, gateway: GatewayDep) -> AgentOut:
    """Changes the given fields; a new password or `valid: false` ends the agent's sessions."""
    return await admin.update_agent(gateway.service.db, gateway.accounts, actor, username, change)


@router.delete("/agents/{username}/sessions")
async def revoke_sessions(username: Username, actor: AdminDep, gateway: GatewayDep) -> dict[str, int]:
    return {"revoked": await admin.revoke_sessions(gateway.service.db, actor, username)}


@router.get("/groups")
async def list_groups(
    _: AdminDep,
    gateway: GatewayDep,
    per_queue: Annotated[bool, Query(description="include queue:<name> groups")] = False,
) -> dict[str, Any]:
    return await admin.list_groups(gateway.service.db, per_queue)


@router.post("/groups", status_code=201)
async def create_group(spec: GroupCreate, actor: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    return await admin.create_group(gateway.service.db, actor, spec)


@router.get("/roles")
async def list_roles(_: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    return await admin.list_roles(gateway.service.db)


@router.put("/roles/{name}")
async def put_role(
    name: Annotated[str, Path(pattern=NAME_PATTERN)], spec: RoleIn, actor: AdminDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Creates or replaces a role: a named bundle of per-queue and group permissions."""
    return await admin.put_role(gateway.service.db, actor, name, spec)


@router.get("/audit")
async def audit_log(_: AdminDep, gateway: GatewayDep, page: Page = 1, page_size: PageSize = 100) -> dict[str, Any]:
    """Every admin change, newest first, with who made it."""
    return await admin.list_audit(gateway.service.db, page, page_size)


# --------------------------------------------------------------------------- other services' admin calls


async def _forward(
    gateway: Gateway, actor: Principal, service: ServiceName, method: str, path: str, action: str, body: Any = None
) -> Any:
    """Make the change in the owning service, then audit it here (after it succeeded)."""
    result = await gateway.upstream.call(service, method, path, actor=actor.username, json=body)
    await admin.record(gateway.service.db, actor, action, path.strip("/"), {"body": body} if body else {})
    return result


@router.get("/queues")
async def admin_queues(actor: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    return await gateway.desk.queues(actor)


@router.put("/queues/{name}")
async def put_queue(
    name: Annotated[str, Path(pattern=SEGMENT_PATTERN)], body: AnyBody, actor: AdminDep, gateway: GatewayDep
) -> Any:
    """Creates or changes a queue in tickets (body: QueueConfigured's fields but `name`)."""
    return await _forward(gateway, actor, "tickets", "PUT", f"/queues/{name}", "queue.put", body)


@router.get("/templates")
async def admin_templates(
    actor: AdminDep,
    gateway: GatewayDep,
    queue: Annotated[str | None, Query(max_length=200, description="only templates usable in this queue")] = None,
) -> dict[str, Any]:
    """Every template (`{id, name, body, queues}`; no queues means every queue), for the admin screen."""
    data = await gateway.upstream.call("tickets", "GET", "/templates", actor=actor.username, params={"queue": queue})
    return page_of(list((data or {}).get("items", [])))


@router.put("/templates/{template_id}")
async def put_template(
    template_id: Annotated[str, Path(pattern=SEGMENT_PATTERN)], body: AnyBody, actor: AdminDep, gateway: GatewayDep
) -> Any:
    """Creates or changes a template in tickets (`{name, body, queues}`)."""
    return await _forward(gateway, actor, "tickets", "PUT", f"/templates/{template_id}", "template.put", body)


@router.delete("/templates/{template_id}")
async def delete_template(
    template_id: Annotated[str, Path(pattern=SEGMENT_PATTERN)], actor: AdminDep, gateway: GatewayDep
) -> Any:
    return await _forward(gateway, actor, "tickets", "DELETE", f"/templates/{template_id}", "template.delete")


@router.get("/system-addresses")
async def system_addresses(actor: AdminDep, gateway: GatewayDep) -> Any:
    return await gateway.upstream.call("router", "GET", "/system-addresses", actor=actor.username)


@router.put("/system-addresses/{email}")
async def put_system_address(
    email: Annotated[str, Path(pattern=r"^[^/?#%\s]+@[^/?#%\s]+$")], body: AnyBody, actor: AdminDep, gateway: GatewayDep
) -> Any:
    return await _forward(gateway, actor, "router", "PUT", f"/system-addresses/{email}", "system_address.put", body)


@router.delete("/system-addresses/{email}")
async def delete_system_address(
    email: Annotated[str, Path(pattern=r"^[^/?#%\s]+@[^/?#%\s]+$")], actor: AdminDep, gateway: GatewayDep
) -> Any:
    return await _forward(gateway, actor, "router", "DELETE", f"/system-addresses/{email}", "system_address.delete")


@router.get("/filters")
async def filters(actor: AdminDep, gateway: GatewayDep) -> Any:
    return await gateway.upstream.call("router", "GET", "/filters", actor=actor.username)


@router.post("/filters", status_code=201)
async def create_filter(body: AnyBody, actor: AdminDep, gateway: GatewayDep) -> Any:
    return await _forward(gateway, actor, "router", "POST", "/filters", "filter.create", body)


@router.put("/filters/{filter_id}")
async def put_filter(
    filter_id: Annotated[str, Path(pattern=SEGMENT_PATTERN)], body: AnyBody, actor: AdminDep, gateway: GatewayDep
) -> Any:
    return await _forward(gateway, actor, "router", "PUT", f"/filters/{filter_id}", "filter.put", body)


@router.delete("/filters/{filter_id}")
async def delete_filter(
    filter_id: Annotated[str, Path(pattern=SEGMENT_PATTERN)], actor: AdminDep, gateway: GatewayDep
) -> Any:
    return await _forward(gateway, actor, "router", "DELETE", f"/filters/{filter_id}", "filter.delete")

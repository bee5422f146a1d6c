"""The router's HTTP API (docs/services.md): system addresses, filters, decisions, classifier.

Errors are ``{"error": <code>, "detail": <text>, "field": <input>}``; changes need ``X-Actor``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.router import store
from services.router.configuration import Configurator
from services.router.errors import RouterError
from services.router.state import RouterState
from shared.service import Service


class SystemAddressBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: str = Field(min_length=1)
    display_name: str = ""
    language_queues: dict[str, str] = {}


class FilterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    position: int = 0
    match: dict[str, str]
    actions: dict[str, Any]
    enabled: bool = True


def require_actor(x_actor: str | None = Header(default=None)) -> str:
    """Who makes a change: every configuration event records it."""
    if not x_actor or not x_actor.strip():
        raise RouterError(422, "actor_required", "changes need an X-Actor header naming who makes them", "X-Actor")
    return x_actor.strip()


Actor = Annotated[str, Depends(require_actor)]


def build_router(service: Service, state: RouterState, configurator: Configurator) -> APIRouter:
    router = APIRouter(tags=["router"])

    @router.get("/system-addresses")
    async def list_addresses() -> dict[str, Any]:
        return _listing(await store.list_addresses(service.db))

    @router.get("/system-addresses/{email}")
    async def get_address(email: str) -> dict[str, Any]:
        found = await store.get_address(service.db, email.strip().lower())
        return _found(found, "address", email)

    @router.put("/system-addresses/{email}")
    async def put_address(email: str, body: SystemAddressBody, actor: Actor) -> dict[str, Any]:
        return await configurator.put_address(email, body.queue, body.display_name, body.language_queues, actor)

    @router.delete("/system-addresses/{email}")
    async def delete_address(email: str, actor: Actor) -> dict[str, Any]:
        return await configurator.delete_address(email, actor)

    @router.get("/filters")
    async def list_filters() -> dict[str, Any]:
        return _listing(await store.list_filters(service.db))

    @router.post("/filters", status_code=201)
    async def create_filter(body: FilterBody, actor: Actor) -> dict[str, Any]:
        return await configurator.save_filter(None, body.model_dump(), actor)

    @router.get("/filters/{filter_id}")
    async def get_filter(filter_id: str) -> dict[str, Any]:
        return _found(await store.get_filter(service.db, filter_id), "filter", filter_id)

    @router.put("/filters/{filter_id}")
    async def put_filter(filter_id: str, body: FilterBody, actor: Actor) -> dict[str, Any]:
        return await configurator.save_filter(filter_id, body.model_dump(), actor)

    @router.delete("/filters/{filter_id}")
    async def delete_filter(filter_id: str, actor: Actor) -> dict[str, Any]:
        return await configurator.delete_filter(filter_id, actor)

    @router.get("/mails/{mail_id}")
    async def get_mail(mail_id: str) -> dict[str, Any]:
        return {"status": "routed", **_found(await store.get_decision(service.db, mail_id), "mail", mail_id)}

    @router.get("/classifier")
    async def classifier() -> dict[str, Any]:
        await state.refresh(service.db, force=True)
        model = state.classifier
        labels = [{"label": label, "documents": model.document_count(label)} for label in model.labels]
        return {
            "model_version": state.classifier_version,
            "trained": len(labels) >= 2,
            "labels": labels,
            "documents": sum(item["documents"] for item in labels),
            "vocabulary": model.vocabulary,
        }

    return router


def _found(item: dict[str, Any] | None, what: str, key: str) -> dict[str, Any]:
    if item is None:
        raise RouterError(404, f"{what}_not_found", f"no {what} {key!r}")
    return item


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": len(items), "items": items}


def install_error_handlers(app: FastAPI) -> None:
    """The router's own errors in the project's shape (invalid request bodies get their 422 from
    ``shared.service``)."""

    @app.exception_handler(RouterError)
    async def router_error(_: Request, exc: RouterError) -> JSONResponse:
        body = {"error": exc.code, "detail": exc.detail}
        if exc.field is not None:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status)

"""The agent's own preferences: language, which notices to get, and "My Queues"."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.gateway import store
from services.gateway.api.deps import AgentDep, GatewayDep
from services.gateway.errors import ApiError, GatewayRoute
from services.gateway.profiles import InvalidPreference, merge_preferences, preferences_of, profile_of
from shared.logs import correlation_id

router = APIRouter(prefix="/api/me", tags=["session"], route_class=GatewayRoute)


class Notifications(BaseModel):
    new_ticket: bool
    follow_up: bool
    unlocked_timeout: bool
    pending_reminder: bool
    escalation_warning: bool
    escalation_breach: bool


class PreferencesOut(BaseModel):
    language: Literal["en", "de"]
    notifications: Notifications
    my_queues: list[str] = Field(description="queues whose new tickets (and reminders, escalations) concern me")


class PreferencesIn(BaseModel):
    """Any subset: what is missing stays as it is; ``notifications`` may name only some kinds."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, description="en or de")
    notifications: dict[str, StrictBool] | None = Field(None, description="kind → on/off")
    my_queues: list[str] | None = Field(None, max_length=1000, description="queues the agent may read")


@router.get("/preferences", response_model=PreferencesOut)
async def get_preferences(agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    row = await store.agent_preferences(gateway.service.db, agent.agent_id)
    prefs = preferences_of(*(row["language"], row["notifications"], row["my_queues"]) if row else (None, None, None))
    return prefs.as_json()


@router.put("/preferences", response_model=PreferencesOut, responses={422: {}})
async def put_preferences(body: PreferencesIn, agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    async with gateway.service.db.acquire() as conn, conn.transaction():
        row = await store.agent_preferences(conn, agent.agent_id)
        current = preferences_of(*(row["language"], row["notifications"], row["my_queues"]) if row else (None,) * 3)
        profile = await profile_of(conn, agent.username) or {}
        try:
            prefs = merge_preferences(
                current,
                language=body.language,
                notifications=body.notifications,
                my_queues=body.my_queues,
                readable=profile.get("readable_queues", []),
            )
        except InvalidPreference as exc:
            raise ApiError(422, "invalid_preference", str(exc), field=exc.field) from None
        if prefs != current:
            await store.put_agent_preferences(
                conn,
                agent.agent_id,
                language=prefs.language,
                notifications=prefs.notifications,
                my_queues=prefs.my_queues,
            )
            changed = {k: v for k, v in prefs.as_json().items() if v != current.as_json()[k]}
            await store.audit(
                conn,
                actor=agent.username,
                action="agent.preferences",
                target=f"agent:{agent.username}",
                detail=changed,
                correlation_id=correlation_id.get(),
            )
    return prefs.as_json()

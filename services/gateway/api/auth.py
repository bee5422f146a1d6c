"""Login, logout and who am I."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from services.gateway.accounts import LoginRefused, session_cookie_attributes
from services.gateway.api.deps import AgentDep, GatewayDep
from services.gateway.errors import ApiError, GatewayRoute
from services.gateway.permissions import PERMISSIONS, queue_of_group, queue_permissions
from services.gateway.security import CSRF_COOKIE, SESSION_COOKIE

router = APIRouter(prefix="/api", tags=["session"], route_class=GatewayRoute)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    token: str = Field(description="for `Authorization: Bearer`; the same session as the cookie")
    csrf_token: str = Field(description="also in the firstline_csrf cookie; send as X-CSRF-Token with cookies")
    username: str
    expires_at: datetime


class Me(BaseModel):
    username: str
    full_name: str
    is_admin: bool
    capabilities: list[str]
    roles: list[str]
    permissions: dict[str, list[str]] = Field(description="queue → the agent's permissions there (known queues)")
    counters: dict[str, int | None] = Field(description="locked (mine), watched (by me), new; null if unknown")


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def origin_allowed(request: Request, allowed: list[str]) -> bool:
    """No Origin (not a browser, or a same-origin GET-style form) is fine; else it must be ours."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in allowed or origin in (f"http://{host}", f"https://{host}")


@router.post("/login", response_model=LoginResponse, responses={401: {}, 403: {}, 429: {}})
async def login(body: LoginRequest, request: Request, response: Response, gateway: GatewayDep) -> LoginResponse:
    if not origin_allowed(request, gateway.settings.allowed_origins):
        raise ApiError(403, "bad_origin", "login from another site is refused", field="Origin")
    ip = request.client.host if request.client else "unknown"
    try:
        result = await gateway.accounts.login(
            body.username, body.password, ip=ip, user_agent=request.headers.get("user-agent")
        )
    except LoginRefused as refused:
        if refused.retry_after:
            raise ApiError(
                429,
                "too_many_attempts",
                f"too many failed logins; try again in {refused.retry_after} s",
                headers={"Retry-After": str(refused.retry_after)},
                retry_after=refused.retry_after,
            ) from None
        raise ApiError(401, "invalid_credentials", "wrong username or password") from None
    attributes = session_cookie_attributes(gateway.settings, is_https(request))
    response.set_cookie(SESSION_COOKIE, result.token, httponly=True, **attributes)
    response.set_cookie(CSRF_COOKIE, result.csrf_token, httponly=False, **attributes)
    return LoginResponse(
        token=result.token, csrf_token=result.csrf_token, username=result.username, expires_at=result.expires_at
    )


@router.post("/logout", status_code=204, response_class=Response)
async def logout(agent: AgentDep, gateway: GatewayDep, request: Request) -> Response:
    await gateway.accounts.logout(agent)
    response = Response(status_code=204)
    secure = session_cookie_attributes(gateway.settings, is_https(request))["secure"]
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=name == SESSION_COOKIE, samesite="lax")
    return response


@router.get("/me", response_model=Me)
async def me(agent: AgentDep, gateway: GatewayDep) -> Me:
    directory = await gateway.desk.directory()
    named = {queue_of_group(g) for g in agent.groups} | {
        queue_of_group(g) for role in agent.access.roles for g in role.groups
    }
    permissions: dict[str, list[str]] = {}
    for name in sorted(set(directory.groups) | {n for n in named if n}):
        granted = queue_permissions(agent.access, directory.queue(name))
        if granted:
            permissions[name] = [p for p in PERMISSIONS if p in granted]
    return Me(
        username=agent.username,
        full_name=agent.full_name,
        is_admin=agent.is_admin,
        capabilities=sorted(agent.capabilities),
        roles=list(agent.roles),
        permissions=permissions,
        counters=await gateway.desk.counters(agent),
    )

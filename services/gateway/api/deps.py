"""Request dependencies: the gateway's parts and the authenticated agent.

Credentials: ``Authorization: Bearer <token>`` first, else the ``firstline_session`` cookie.
A cookie-authenticated request with an unsafe method must carry the ``X-CSRF-Token`` header
matching the session (``security.verify_csrf_token``); a bearer request needs none, since a
browser never adds that header by itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.gateway.accounts import Principal, Via
from services.gateway.errors import ApiError, forbidden, unauthenticated
from services.gateway.runtime import Gateway
from services.gateway.security import CSRF_HEADER, SESSION_COOKIE, csrf_required, verify_csrf_token


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def credentials(request: Request) -> tuple[str | None, Via]:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "bearer"
    return request.cookies.get(SESSION_COOKIE) or None, "cookie"


async def current_agent(request: Request, gateway: GatewayDep) -> Principal:
    token, via = credentials(request)
    if not token:
        raise unauthenticated()
    principal = await gateway.accounts.authenticate(token, via)
    if principal is None:
        raise unauthenticated("the session is invalid, has expired or was ended")
    if csrf_required(request.method, via == "cookie") and not verify_csrf_token(
        gateway.accounts.csrf_secret, principal.session_digest, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header for this session")
    return principal


AgentDep = Annotated[Principal, Depends(current_agent)]


async def current_admin(agent: AgentDep) -> Principal:
    if not agent.is_admin:
        raise forbidden("administrators only")
    return agent


AdminDep = Annotated[Principal, Depends(current_admin)]

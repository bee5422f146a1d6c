"""The agent UI: one page and its static files (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.gateway.errors import GatewayRoute

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["ui"], route_class=GatewayRoute, include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

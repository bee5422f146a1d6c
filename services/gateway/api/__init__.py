"""The gateway's HTTP API, one router per feature; routes are thin (validate, call, answer)."""

from fastapi import APIRouter

from services.gateway.api import admin, audit, auth, events, mails, preferences, queues, tickets, ui


def routers() -> list[APIRouter]:
    return [
        auth.router,
        preferences.router,
        queues.router,
        tickets.router,
        mails.router,
        admin.router,
        audit.router,
        events.router,
        ui.router,
    ]

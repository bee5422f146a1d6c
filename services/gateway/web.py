"""Browser-facing hardening: security headers on every response.

The Content-Security-Policy allows only the gateway's own script, style and API (the UI has no
inline script or handler and builds the DOM from text nodes), images from itself or ``data:``,
no plugins, no framing of the gateway by anyone, and forms posting only to itself. A mail's HTML
is shown in a sandboxed ``srcdoc`` frame, which inherits this policy too. API answers are never
cached; mail bytes get ``sandbox`` (set where they are served).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ]
)

# FastAPI's interactive docs load their script from a CDN; they show no user data.
_DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc")

_ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class SecurityHeaders:
    """Pure ASGI (so streamed answers such as server-sent events pass untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS.items():
                    headers.setdefault(name, value)
                if path not in _DOCS:
                    headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
                if path.startswith("/api/"):
                    headers.setdefault("cache-control", "no-store")
                elif path == "/" or path.startswith("/static/"):
                    headers.setdefault("cache-control", "no-cache")
            await send(message)

        await self.app(scope, receive, send_with_headers)

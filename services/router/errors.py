"""The router API's errors: each becomes ``{"error": code, "detail": text, "field": input}``."""

from __future__ import annotations


class RouterError(Exception):
    """A request that cannot be served; ``field`` names the offending input, if one is."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field

"""`python -m services.gateway`: serve the agent UI and API until SIGTERM.

Like ``shared.service.run``, except that a shutdown signal first ends the open live-update
streams: uvicorn waits for open connections before it runs the app's shutdown, and an
event stream never finishes on its own.
"""

from __future__ import annotations

import uvicorn

from services.gateway.app import create_app
from services.gateway.runtime import Gateway
from services.gateway.settings import GatewaySettings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig: int, frame: object) -> None:
        self.gateway.end_live_streams()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def main() -> None:
    settings = GatewaySettings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=25,
    )
    _Server(config, app.state.gateway).run()


if __name__ == "__main__":
    main()

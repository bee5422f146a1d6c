"""Container health check: GET http://127.0.0.1:$HTTP_PORT<path> must answer 200.

    python /app/healthcheck.py [/healthz|/readyz]

Standard library only (the image has no curl). Without HTTP_PORT the service's default port
(from SERVICE_NAME) is used.
"""

import os
import sys
import urllib.request

DEFAULT_PORTS = {"ingest": 8001, "router": 8002, "tickets": 8003, "notify": 8004, "gateway": 8080}


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    port = os.environ.get("HTTP_PORT") or DEFAULT_PORTS.get(os.environ.get("SERVICE_NAME", ""), 8080)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
        print(f"{path} on port {port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

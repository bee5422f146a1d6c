"""``python -m services.tickets``: the tickets service on ``HTTP_PORT`` (8003)."""

from services.tickets.app import create_app
from services.tickets.settings import TicketsSettings
from shared.service import run


def main() -> None:
    settings = TicketsSettings()
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()

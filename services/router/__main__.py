"""``python -m services.router``: serve the router until SIGTERM."""

from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.service import run


def main() -> None:
    settings = RouterSettings()
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()

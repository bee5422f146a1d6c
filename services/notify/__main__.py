"""``python -m services.notify``: serve notify until SIGTERM."""

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.service import run

if __name__ == "__main__":
    settings = NotifySettings()
    run(create_app(settings), settings)

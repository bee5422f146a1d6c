from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.service import run

settings = IngestSettings()
run(create_app(settings), settings)

"""The WSGI entry point for gunicorn: `gunicorn api.wsgi:app`.

Logging is configured here, for the serving process, and not in `create_app`, which tests call
in-process. Gunicorn's own loggers are configured by its config (docker/gunicorn.conf.py).
"""

from api import create_app
from shared.logs import configure_logging
from shared.settings import Settings

settings = Settings.from_env()
configure_logging(settings)
app = create_app(settings)

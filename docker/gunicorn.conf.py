"""Gunicorn settings for the API image: bind from the settings, JSON log lines, graceful stop.

Only gunicorn's own loggers are configured here; the app configures its own from
`SALIENCY_LOG_FORMAT`.

Gunicorn reads `WEB_CONCURRENCY` (worker processes) and `GUNICORN_CMD_ARGS` itself; everything
the service needs comes from `Settings.from_env()`, so a bad variable fails the start at once.
"""

from __future__ import annotations

import json
import logging
import time

import gunicorn.util

from api.errors import write_server_error
from shared.settings import Settings

_settings = Settings.from_env()
# Requests gunicorn refuses itself (over-long lines or headers) are answered in the API's JSON
# error shape too; the app answers 414/431 itself below these limits.
gunicorn.util.write_error = write_server_error
limit_request_line = 8190
limit_request_field_size = 16380

bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
threads = 4
# Uploads of up to SALIENCY_MAX_REQUEST_BYTES must fit in `timeout`.
timeout = 120
# On SIGTERM: stop accepting, let requests in flight finish for this long, then exit. Keep it
# below the pod's terminationGracePeriodSeconds and compose's stop_grace_period.
graceful_timeout = 30
keepalive = 75  # longer than common load-balancer idle timeouts (60 s), so they close first
worker_tmp_dir = "/dev/shm"  # heartbeat files; the root filesystem is read-only in k8s
accesslog = "-"
errorlog = "-"

# The query string is not logged: a signed file URL's signature opens its file until it
# expires, and has no place in logs.
_ACCESS_FIELDS = {"m": "method", "U": "path", "s": "status", "B": "bytes",
                  "D": "duration_us", "h": "remote", "a": "user_agent"}
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(D)s'


def on_starting(server) -> None:
    """The bind gunicorn was actually given (`--bind`, `GUNICORN_CMD_ARGS`) is what the app's
    checks must see: anonymous access and the signing key beyond loopback are refused."""
    import os

    host, _, port = str(server.cfg.bind[0]).rpartition(":")
    os.environ["SALIENCY_HOST"] = host.strip("[]") or "0.0.0.0"
    os.environ["SALIENCY_PORT"] = port


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access records carry the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            line["message"] = "request"
            for atom, key in _ACCESS_FIELDS.items():
                line[key] = record.args.get(atom)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


_TEXT = {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": {"()": JsonFormatter} if _settings.log_format == "json" else _TEXT},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "default",
                   "stream": "ext://sys.stdout"},
    },
    # Gunicorn merges this over its defaults: the root logger must name a handler of ours.
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}

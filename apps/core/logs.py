"""Structured logging: a request id on every record, JSON lines in production."""

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_STANDARD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served (or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


# A credential in a query string (`?token=...`, `&access_token=...`): servers log the full URL.
SECRET_IN_URL = re.compile(r"([?&](?:token|access_token|api_key|key)=)[^&\s\"']*", re.IGNORECASE)


def scrub_secrets(text: str) -> str:
    return SECRET_IN_URL.sub(r"\1[redacted]", text)


class SecretScrubFilter(logging.Filter):
    """Redact credentials in URLs before a record is written (uvicorn's and daphne's access lines).

    The WebSocket feed refuses `?token=`, but the server logs the refused
    handshake's URL first; this keeps the token out of every log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub_secrets(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: scrub_secrets(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

"""Log lines for people and for log shippers: always a timestamp, and the request id when there is one.

``text`` (the default) reads well in a terminal or the journal::

    2026-12-01T18:15:41.123Z INFO idp.audit [3f2a9c...]: signin success reason=password user=alice ...

``json`` gives one object a line for a log shipper: ``timestamp``, ``level``, ``logger``, ``request_id`` and
``message`` (plus ``exception`` when there is one).

The request id lives in a context variable that the web layer sets for the length of a request
(idp.web.request_id); this module is on the ground floor so that every room's log lines carry it.
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("idp_request_id", default=None)
"""The id of the request being served by this thread, or None outside a request."""

QUIET_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every HTTP call at INFO: shown only when debugging."""


def timestamp(created: float) -> str:
    """A record's time as ISO 8601 in UTC with milliseconds: the same on every node, sortable as text."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record that passes the handler, for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        where = f"{record.name} [{request_id}]" if request_id else record.name
        line = f"{timestamp(record.created)} {record.levelname} {where}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_FORMATTERS: dict[LogFormat, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


def logging_config(log_format: LogFormat, level: str, *, access_log: bool = False, syslog: str = "") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: one handler on stderr in the chosen format, at ``level``,
    and the same lines to syslog when ``syslog`` names it ("/dev/log", or "host:port" over UDP). gunicorn
    takes the same dictionary (``logconfig_dict``), so its own lines look like ours; its access lines (one per
    request, at INFO) pass only with ``access_log``."""
    quiet_level = "DEBUG" if level == "DEBUG" else "WARNING"
    handlers: dict[str, dict[str, Any]] = {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "idp",
            "filters": ["request_id"],
        }
    }
    if syslog:
        handlers["syslog"] = {
            "class": "logging.handlers.SysLogHandler",
            "address": syslog_address(syslog),
            "facility": "auth",
            "formatter": "idp",
            "filters": ["request_id"],
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"idp": {"()": _FORMATTERS[log_format]}},
        "handlers": handlers,
        "root": {"level": level, "handlers": list(handlers)},
        "loggers": {
            # gunicorn's own loggers go through our handler instead of theirs.
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO" if access_log else "WARNING", "handlers": [], "propagate": True},
            **{name: {"level": quiet_level} for name in QUIET_LOGGERS},
        },
    }


def syslog_address(text: str) -> str | tuple[str, int]:
    """ "/dev/log" (a local socket) as it is; "host:port" as the (host, port) of a UDP syslog server."""
    if text.startswith("/"):
        return text
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (text, 514)


def skip_unused_record_fields() -> None:
    """Stop the logging module from collecting what no format of ours prints (the caller's file and line,
    thread, process): at one audit line per sign-in, collecting them was a few percent of a response's CPU.
    These are the switches the logging HOWTO documents for this ("Optimization")."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(log_format: LogFormat = "text", level: str = "WARNING") -> None:
    logging.config.dictConfig(logging_config(log_format, level))

"""Logging set-up: one event per line, journald-friendly, with secrets masked.

Under systemd (`$JOURNAL_STREAM` set) lines carry a `<N>` syslog priority prefix instead of a
timestamp of our own, so journald records the level and its own time. Every known secret
(alerter.secrets) is masked in every record, whichever library logged it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from alerter import secrets

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class Masking(logging.Filter):
    """Masks the secrets alerter.secrets knows in a record's final message and exception text.
    It holds no rule of its own: what is a secret and how it is masked are alerter.secrets'."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not secrets.known():
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a library's malformed record: logging reports it itself
            return True
        record.msg, record.args = secrets.mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets.mask(record.exc_text)
        return True


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " ⏎ ")
        return f"<{PRIORITY.get(record.levelno, 6)}>{text}"


MASKING = Masking()
# libraries that log a channel URL's token or password at DEBUG: masked at the source too, so
# that every handler (not only ours) gets the masked record
LIBRARY_LOGGERS = ("apprise", "urllib3", "urllib3.connectionpool", "urllib3.util.retry", "requests")


def mask_library_logs() -> None:
    """Mask the records of LIBRARY_LOGGERS whichever handler receives them. Idempotent."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if MASKING not in logger.filters:
            logger.addFilter(MASKING)


def setup_logging(level: str = "info", secret_values: Iterable[str] = (), stream=None) -> None:
    """Log to stderr (journald-aware) at `level`, every record masked; `secret_values` (pass
    `alerter.secrets.of(settings)`) are remembered before anything is logged."""
    secrets.remember(secret_values)
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(MASKING)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # chatty libraries: their warnings still show
    for name in ("apscheduler", "asyncio", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

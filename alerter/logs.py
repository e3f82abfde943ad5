"""Logging set-up: one event per line, journald-friendly, with secrets redacted.

Under systemd (`$JOURNAL_STREAM` set) lines carry a `<N>` syslog priority prefix instead of a
timestamp of our own, so journald records the level and its own time. Every known secret value
is replaced by `***` in every record, whichever library logged it.
"""

from __future__ import annotations

import logging
import os
import sys

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class Redactor(logging.Filter):
    """Replaces secret values in a record's final message (and exception text) with ***."""

    def __init__(self, secrets: list[str] = ()):
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets) -> None:
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s and len(s) >= 4)}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.scrub(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
        return True


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " ⏎ ")
        return f"<{PRIORITY.get(record.levelno, 6)}>{text}"


REDACTOR = Redactor()


def setup_logging(level: str = "info", secrets: list[str] = (), stream=None) -> None:
    REDACTOR.add(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # chatty libraries: their warnings still show
    for name in ("apscheduler", "asyncio", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

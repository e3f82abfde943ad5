"""Shared fixtures: a tmp database, a JSON webhook receiver and an SMTP server, all on
loopback port 0 (never a fixed port), plus a port nothing listens on."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller


# ---------------------------------------------------------------- webhook receiver

@dataclass
class Reply:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": "test failure"}'


class WebhookReceiver:
    """A JSON webhook on 127.0.0.1:<port 0>. Records every POST; can be told to answer the
    next N requests with an error (500, 429 + Retry-After, …), to answer slowly, or to stop
    listening for a while (connections refused) and come back on the same port."""

    def __init__(self) -> None:
        self.requests: list[dict] = []  # {"path", "headers", "body" (parsed JSON or text)}
        self.replies: list[Reply] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def bodies(self) -> list:
        with self._lock:
            return [r["body"] for r in self.requests]

    def fail_next(self, count: int = 1, status: int = 500, *, retry_after: str | None = None, body: bytes | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self.replies += [Reply(status, headers, body if body is not None else Reply.body) for _ in range(count)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    reply = receiver.replies.pop(0) if receiver.replies else Reply(200, {}, b'{"ok": true}')
                self.send_response(reply.status)
                for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- SMTP server

class _Collector:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd hook name)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class _PortZeroController(Controller):
    """aiosmtpd's Controller connects to `self.port` to check the server is up; with port 0,
    read the port the OS chose first."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        return super()._trigger_server()


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[EmailMessage]
    envelopes: list[tuple[str, list[str]]]

    def url(self, to: str = "trader@example.com") -> str:
        return f"mailto://{self.host}:{self.port}?from=alerter@example.com&to={to}"


@pytest.fixture
def smtp_server(monkeypatch):
    """A local SMTP server. apprise spaces e-mails to one server 5.5 s apart (its politeness to
    real mail hosts); for this in-process loopback server the spacing is turned off, delivery
    itself is untouched. Processes started by a test (python -m alerter run) keep the spacing."""
    from apprise.plugins.email.base import NotifyEmail

    monkeypatch.setattr(NotifyEmail, "request_rate_per_sec", 0)
    collector = _Collector()
    controller = _PortZeroController(collector, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, collector.messages, collector.envelopes)
    finally:
        controller.stop()


# ---------------------------------------------------------------- database

@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "alerter.db"

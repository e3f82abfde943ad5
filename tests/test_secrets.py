"""No secret ever leaves the process: a whole scenario — `alerter validate`, `test-notify`,
`check` and the daemon (`alerter run` at DEBUG) through a warning, a failing webhook, rejected
credentials (blind) and their restoration — with four distinctive secrets, then every byte the
user or a channel could see is searched for them: each command's stdout and stderr, the
daemon's DEBUG log, the messages the webhook and the SMTP server received, and the SQLite file
(with its -wal/-shm).

Then alerter.secrets on its own: which values of the settings are secrets, and how `mask` hides
them (longest first, short values left alone, no secret ever survives)."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.smtp import AuthResult
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from alerter import secrets
from alerter.config import build_settings
from alerter.logs import MASKING
from conftest import SmtpServer, _Collector, _PortZeroController
from helpers import DaemonRuns, query, simulator_thread, to_toml, wait_until
from helpers import price_for

API_KEY = "AK-SECRET-1234567890"
SECRET = "SK-SECRET-0987654321"
TOKEN = "TOKEN-SECRET-abcdef"
PASSWORD = "PW-SECRET-xyz"
SECRETS = (API_KEY, SECRET, TOKEN, PASSWORD)
MARKER = re.compile(rb"(AK|SK|TOKEN|PW)-SECRET")  # a cut-off secret still carries its marker

SCENARIO = {
    "name": "secrets",
    "prices": {"BTCUSDT": 60_000},
    "accounts": [{"name": "main", "api_key": API_KEY, "wallet_balance": 10_000,
                  "positions": [{"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000,
                                 "margin_type": "cross", "leverage": 20}]}],
}


def needles() -> list[bytes]:
    """Every form in which a secret could slip out: as is, URL-quoted, base64 (SMTP AUTH)."""
    forms = set()
    for secret in SECRETS:
        forms |= {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
    forms.add(base64.b64encode(f"\0user\0{PASSWORD}".encode()).decode())  # AUTH PLAIN
    return sorted(f.encode() for f in forms)


def leaks(blob: bytes) -> list[str]:
    found = [n.decode() for n in needles() if n in blob]
    found += [m.group().decode() for m in MARKER.finditer(blob)]
    return sorted(set(found))


@pytest.fixture
def smtp_with_auth():
    """An SMTP server that offers AUTH without TLS and accepts any login (recording it), so
    apprise really sends the password."""
    logins: list[tuple[bytes, bytes]] = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    collector = _Collector()
    controller = _PortZeroController(collector, hostname="127.0.0.1", port=0, auth_require_tls=False, authenticator=authenticate)
    controller.start()
    try:
        server = SmtpServer("127.0.0.1", controller.port, collector.messages, collector.envelopes)
        server.logins = logins
        yield server
    finally:
        controller.stop()


class Outputs:
    """Runs CLI commands and keeps everything they printed."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.captured: list[tuple[str, bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC")}

    def run(self, *args: str, expect: int) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "alerter", *args, "--config", str(self.config)],
                             capture_output=True, env=self.env, timeout=60)
        name = " ".join(args)
        self.captured += [(f"{name} stdout", out.stdout), (f"{name} stderr", out.stderr)]
        assert out.returncode == expect, f"alerter {name}: exit {out.returncode}\n{out.stdout.decode()}\n{out.stderr.decode()}"
        return out


def test_no_secret_in_any_output_message_or_database(tmp_path, webhook, smtp_with_auth):
    db = tmp_path / "alerter.db"
    with simulator_thread(SCENARIO) as running:
        sim = running.sim
        config = {
            "daemon": {"database": str(db), "poll_interval": "0.3s", "request_timeout": "2s", "log_level": "debug"},
            "repeat": {"warning": "never", "call": "never", "critical": "never", "blind": "1h"},
            "accounts": [{"name": "main", "exchange": "binanceusdm", "api_key": API_KEY, "secret": SECRET, "ccxt": sim.ccxt_config()}],
            "channels": [
                {"name": "hook", "url": f"json://{webhook.url}/hook/{TOKEN}"},
                {"name": "mail", "url": f"mailto://user:{PASSWORD}@127.0.0.1:{smtp_with_auth.port}?from=alerter@example.com&to=trader@example.com"},
            ],
        }
        path = tmp_path / "alerter.toml"
        path.write_text(to_toml(config))
        path.chmod(0o644)  # literal secrets in a readable file: validate warns, naming keys only
        cli = Outputs(path)

        validated = cli.run("validate", expect=0)
        assert b"readable by group or others" in validated.stderr and b"accounts[0].api_key" in validated.stderr
        assert b"json://********" in validated.stdout and b"mailto://********" in validated.stdout
        path.chmod(0o600)

        notified = cli.run("test-notify", expect=0)
        assert re.search(rb"hook\s+delivered", notified.stdout) and re.search(rb"mail\s+delivered", notified.stdout)
        assert (b"user", PASSWORD.encode()) in smtp_with_auth.logins  # the password was really used
        webhook.fail_next(1, 500)
        failed = cli.run("test-notify", "--channel", "hook", expect=1)
        assert b"FAILED" in failed.stdout

        checked = cli.run("check", "--json", expect=0)
        assert json.loads(checked.stdout)[0]["level"] == "ok"

        # ---- the daemon at DEBUG: a warning whose webhook delivery fails, then blind, restored
        daemons = DaemonRuns(path, tmp_path / "logs")
        proc = daemons.start()
        try:
            daemons.wait_ready(proc)
            wait_until(lambda: query(db, "SELECT count(*) FROM samples")[0][0], 10, daemons.tail)
            webhook.fail_next(1, 500)
            running.call(lambda: sim.set_prices({"BTCUSDT": price_for(sim, 0.6, api_key=API_KEY)}))
            wait_until(lambda: query(db, "SELECT last_error FROM deliveries WHERE channel = 'hook' AND last_error IS NOT NULL"), 10, daemons.tail)
            wait_until(lambda: query(db, "SELECT 1 FROM deliveries WHERE channel = 'mail' AND status = 'sent'"), 10, daemons.tail)

            running.call(sim.inject, "http401", count=None, api_key=API_KEY)
            wait_until(lambda: query(db, "SELECT 1 FROM alerts WHERE kind = 'blind'"), 10, daemons.tail)
            blind = cli.run("check", "--json", expect=3)
            assert json.loads(blind.stdout)[0]["error"].startswith("credentials")
            table = cli.run("check", expect=3)
            assert b"blind" in table.stdout
            running.call(sim.clear_faults)
            wait_until(lambda: query(db, "SELECT 1 FROM alerts WHERE kind = 'restored'"), 10, daemons.tail)
            wait_until(lambda: not query(db, "SELECT 1 FROM deliveries WHERE status = 'pending' AND last_error IS NULL"), 10, daemons.tail)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0, daemons.tail(1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert API_KEY in {key for key, _ in running.call(sim.request_counts)}  # the key was really sent

    # ---- the failure paths really ran
    log = daemons.stderr().read_bytes()
    assert b" DEBUG " in log
    kinds = [kind for (kind,) in query(db, "SELECT kind FROM alerts ORDER BY id")]
    assert kinds[:2] == ["raised", "blind"] and kinds[-1] == "restored", kinds
    # the webhook's 500 was recorded and logged (the alert then went out with the next one)
    assert re.search(rb"could not deliver \d+ alert\(s\) to hook .*500", log), log[-2000:]
    assert any(b"title" in json.dumps(b).encode() for b in webhook.bodies)
    assert any("BLIND" in m["subject"] for m in smtp_with_auth.messages)

    # ---- and nothing anywhere carries a secret
    places = list(cli.captured)
    places += [("run stdout", daemons.stdout().read_bytes()), ("run stderr (DEBUG)", log)]
    places += [(f"webhook request {i}", json.dumps({"body": r["body"], "headers": r["headers"]}).encode())
               for i, r in enumerate(webhook.requests)]
    places += [(f"e-mail {i}", m.as_bytes()) for i, m in enumerate(smtp_with_auth.messages)]
    for suffix in ("", "-wal", "-shm"):
        file = Path(f"{db}{suffix}")
        if file.exists():
            places.append((file.name, file.read_bytes()))
    found = {where: leaks(blob) for where, blob in places if leaks(blob)}
    assert not found, f"secrets leaked: {found}"


# ---------------------------------------------------------------- alerter.secrets, pure

BOT, CHAT = "123456789:AAHbotTokenValue42", "987654"


def settings_with_every_secret():
    return build_settings({
        "daemon": {"heartbeat_url": "https://hc-ping.example.com/3f2a9c1e-ping-Uuid77"},
        "accounts": [{"name": "main", "exchange": "okx", "api_key": "okx-Key-111", "secret": "okx-Secret-222",
                      "password": "okx-Pass-333", "uid": "uid-44444"}],
        "channels": [
            {"name": "tg", "url": f"tgram://{BOT}/{CHAT}"},
            {"name": "mail", "url": "mailto://user:Mail-Pw-55@smtp.example.com?to=trader@example.com"},
            {"name": "hook", "url": "json://hooks.example.com/alerts/Hook-Token-66"},
        ],
    })


@pytest.mark.parametrize(("value", "secret"), [
    # account credentials, whatever the field
    ("okx-Key-111", True), ("okx-Secret-222", True), ("okx-Pass-333", True), ("uid-44444", True),
    # a whole channel URL, and the credential inside it: a bot id and token, a password, a path token
    (f"tgram://{BOT}/{CHAT}", True), ("123456789", True), ("AAHbotTokenValue42", True),
    ("Mail-Pw-55", True), ("Hook-Token-66", True), ("json://hooks.example.com/alerts/Hook-Token-66", True),
    # the heartbeat's push token
    ("3f2a9c1e-ping-Uuid77", True),
    # what names or locates, not what authenticates
    (CHAT, False), ("user", False), ("smtp.example.com", False), ("hooks.example.com", False),
    ("alerts", False), ("main", False), ("okx", False), ("tgram", False),
])
def test_which_values_of_the_settings_are_secrets(value, secret):
    assert (value in secrets.of(settings_with_every_secret())) is secret


def test_a_new_secret_field_is_found_without_naming_it():
    class Inner(BaseModel):
        label: str
        token: SecretStr

    class Outer(BaseModel):
        inners: list[Inner]
        by_name: dict[str, SecretStr]
        note: str

    found = secrets.of(Outer(inners=[Inner(label="plain-label", token=SecretStr("deep-Token-1"))],
                             by_name={"x": SecretStr("https://push.example.com/Push-Tok-2")}, note="plain-note"))
    assert {"deep-Token-1", "https://push.example.com/Push-Tok-2", "Push-Tok-2"} <= found
    assert not {"plain-label", "plain-note", "x"} & found


def test_mask_longest_first_and_every_form_of_a_url():
    url = "mailto://user:Mail%20Pw%2F55@smtp.example.com"  # the password "Mail Pw/55", quoted
    parts = secrets.url_parts(url)
    assert {"Mail Pw/55", "Mail%20Pw%2F55"} <= parts  # a library may log either form
    assert secrets.mask("key=abcdefgh; abcd", ["abcd", "abcdefgh"]) == "key=***; ***"  # not ***efgh
    assert secrets.mask(f"sent to {url}", parts) == "sent to ***"
    assert secrets.mask("GET /Mail%20Pw%2F55/x", parts) == "GET /***/x"


def test_short_values_are_not_secrets():
    configured = build_settings({"accounts": [{"name": "a", "exchange": "okx", "api_key": "k", "secret": "abc", "password": "pass"}]})
    assert secrets.of(configured) == {"pass"}
    assert secrets.mask("the abc of k", ["abc", "k"]) == "the abc of k"
    secrets.remember(["xyz", ""])
    assert secrets.mask("xyz") == "xyz"


def test_query_strings_and_signed_parameters_are_stripped():
    text = ("GET https://fapi.binance.com/fapi/v2/account?timestamp=1700000000000&signature=deadbeef 401 "
            "sent apiKey=AK-1&recvWindow=5000")
    assert secrets.strip_query(text) == "GET https://fapi.binance.com/fapi/v2/account 401 sent apiKey=…&recvWindow=…"


def test_a_remembered_secret_is_masked_in_every_log_record(caplog):
    secrets.remember(secrets.of(SecretStr("log-Secret-Q7")))
    caplog.handler.addFilter(MASKING)
    try:
        logger = logging.getLogger("alerter.test")
        try:
            raise ValueError("bad key log-Secret-Q7")
        except ValueError:
            logger.exception("key %s refused", "log-Secret-Q7")
    finally:
        caplog.handler.removeFilter(MASKING)
    assert "log-Secret-Q7" not in caplog.text and "key *** refused" in caplog.text and "bad key ***" in caplog.text


@settings(max_examples=300)
@given(st.data())
def test_no_secret_survives_masking(data):
    alphabet = "ab-x"  # few letters: secrets overlap and contain each other
    short = st.text(alphabet, max_size=3)
    secret = st.one_of(st.text(alphabet, min_size=secrets.MIN_LENGTH, max_size=10),
                       st.builds(lambda a, b: a + "*" * 3 + b, short, short).filter(lambda s: len(s) >= secrets.MIN_LENGTH))
    found = data.draw(st.lists(secret, min_size=1, max_size=4))
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(found), short), min_size=1, max_size=8))
    text = "".join(pieces) + found[0]
    masked = secrets.mask(text, found)
    assert not [s for s in found if s in masked]

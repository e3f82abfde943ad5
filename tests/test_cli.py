"""Every command as a user runs it: its output and exit code; every command is in the README's command
table and in the full one of docs/operations.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import inline_toml, simulator_thread

from alerter.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS_PAGE = (ROOT / "docs" / "operations.md").read_text()


def alerter(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "alerter", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


@pytest.mark.parametrize("name", commands())
def test_every_command_is_documented(name):
    row = rf"^\| `alerter {re.escape(name)}\b"
    assert re.search(row, README, re.M), f"README's command table does not list `alerter {name}`"
    reference = COMMANDS_PAGE.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(row, reference, re.M), f"docs/operations.md's command table does not document `alerter {name}`"


def test_readme_opens_with_demo_and_test_commands_and_ci_runs_the_test_command():
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    lines = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2
    demo, tests = lines
    assert "alerter demo" in demo and "pip install" in demo
    assert "pytest" in tests and "pip install" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


LEAN = "import sys, runpy; sys.argv = {argv!r}; \n" \
       "try:\n    runpy.run_module('alerter', run_name='__main__')\nexcept SystemExit:\n    pass\n" \
       "heavy = [m for m in ('ccxt', 'apprise', 'matplotlib', 'aiohttp', 'apscheduler') if m in sys.modules]\n" \
       "print('HEAVY=' + ','.join(heavy))"


# validate makes run's start-up checks, so it may import apprise and ccxt (and ccxt's aiohttp);
# --help imports none of them, and neither imports the plotting or scheduling libraries
@pytest.mark.parametrize("argv, allowed", [
    (["alerter", "--help"], ""),
    (["alerter", "validate", "--config", "CONFIG"], "ccxt,apprise,aiohttp"),
])
def test_help_and_validate_do_not_import_heavy_libraries(argv, allowed, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[accounts]]\nname = "a"\nexchange = "binanceusdm"\napi_key = "env:K"\nsecret = "env:K"\n'
                      '[[channels]]\nname = "c"\nurl = "json://127.0.0.1:9/x"\n')
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    out = subprocess.run([sys.executable, "-c", LEAN.format(argv=argv)], capture_output=True, text=True, timeout=60, env={**os.environ, "K": "x"})
    heavy = out.stdout.rpartition("HEAVY=")[2].split()
    assert set(heavy[0].split(",") if heavy else ()) <= set(filter(None, allowed.split(","))), out.stdout + out.stderr


def test_unknown_argument_is_one_line_exit_2():
    out = alerter("validate", "--nope")
    assert out.returncode == 2 and "unrecognized arguments: --nope" in out.stderr


# ---------------------------------------------------------------- check, against the simulator

SCENARIO = {
    "name": "check",
    "prices": {"BTCUSDT": 60_000},
    "accounts": [{"name": "main", "api_key": "main-key", "wallet_balance": 10_000,
                  "positions": [{"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000, "margin_type": "cross", "leverage": 20}]}],
}


@pytest.fixture
def simulator():
    """The simulator in a thread of its own, so CLI subprocesses can reach it."""
    with simulator_thread(SCENARIO) as running:
        yield running.sim


def check_config(tmp_path, sim, api_key="main-key"):
    path = tmp_path / "check.toml"
    path.write_text(
        f'[daemon]\ndatabase = "{tmp_path / "a.db"}"\nrequest_timeout = "2s"\n'
        f'[[accounts]]\nname = "main"\nexchange = "binanceusdm"\napi_key = "{api_key}"\nsecret = "s3cr3t-value"\n'
        f"ccxt = {inline_toml(sim.ccxt_config())}\n"
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("mark, level, code", [(60_000, "ok", 0), (55_470, "warning", 1), (55_330, "call", 2), (55_280, "critical", 2)])
def test_check_exit_code_follows_the_worst_level(tmp_path, simulator, capsys, mark, level, code):
    """In-process (the exit code is main()'s return value); the process boundary is tested below."""
    from alerter.cli import main

    simulator.set_prices({"BTCUSDT": mark})
    config = str(check_config(tmp_path, simulator))
    assert main(["check", "--json", "--config", config]) == code
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    risk = simulator.state.risk("main-key")
    assert row["level"] == level
    assert row["margin_ratio"] == pytest.approx(risk.cross_margin_ratio, rel=1e-9)
    assert main(["check", "--config", config]) == code
    table = capsys.readouterr().out
    assert level in table and "main" in table


def test_check_with_rejected_credentials_is_blind_exit_3(tmp_path, simulator):
    out = alerter("check", "--json", "--config", str(check_config(tmp_path, simulator, api_key="wrong-key")))
    assert out.returncode == 3
    (row,) = json.loads(out.stdout)
    assert row["level"] == "blind" and row["error"].startswith("credentials")
    assert "s3cr3t-value" not in out.stdout + out.stderr and "wrong-key" not in out.stdout + out.stderr


def test_test_notify_reports_per_channel(tmp_path, webhook, closed_port):
    config = tmp_path / "n.toml"
    config.write_text(f'[[channels]]\nname = "good"\nurl = "json://{webhook.url}/x"\n'
                      f'[[channels]]\nname = "down"\nurl = "json://127.0.0.1:{closed_port}/x"\n')
    out = alerter("test-notify", "--config", str(config))
    assert out.returncode == 1
    assert re.search(r"good\s+delivered", out.stdout) and re.search(r"down\s+FAILED", out.stdout)
    assert len(webhook.bodies) == 1
    only = alerter("test-notify", "--config", str(config), "--channel", "good")
    assert only.returncode == 0 and "down" not in only.stdout
    bad = alerter("test-notify", "--config", str(config), "--channel", "nope")
    assert bad.returncode == 2 and "no channel named 'nope'" in bad.stderr


@pytest.mark.parametrize("daemon_running", [False, True])
def test_check_notify_records_and_sends_unless_a_daemon_delivers(tmp_path, simulator, webhook, capsys, daemon_running):
    """`check --notify` records what the policy decides and sends it; next to a running daemon (it
    holds the database's lock) it only records, and the daemon's worker sends: never twice."""
    import os
    import sqlite3

    from alerter.cli import main
    from alerter.lockfile import hold_lock

    simulator.set_prices({"BTCUSDT": 55_470})  # warning
    config = check_config(tmp_path, simulator)
    config.write_text(config.read_text() + f'[[channels]]\nname = "hook"\nurl = "json://{webhook.url}/hook"\n')
    lock = hold_lock(tmp_path / "a.db") if daemon_running else None
    try:
        assert main(["check", "--notify", "--config", str(config)]) == 1
    finally:
        if lock is not None:
            os.close(lock)
    err = capsys.readouterr().err
    with sqlite3.connect(tmp_path / "a.db") as db:
        statuses = [row[0] for row in db.execute("SELECT d.status FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE a.level = 'warning'")]
    if daemon_running:
        assert webhook.bodies == [] and statuses == ["pending"]
        assert "a daemon is running on this database" in err
    else:
        assert [b["title"].split(" · ")[0] for b in webhook.bodies] == ["WARNING"] and statuses == ["sent"]


def test_check_from_a_shell_leaves_no_database_and_notify_records(tmp_path, simulator):
    """`alerter check` reads the exchange and prints: it opens no database, so a shell's working
    directory gets no alerter.db (the default path); `--notify` records what it decides there."""
    import sqlite3

    simulator.set_prices({"BTCUSDT": 55_470})  # warning
    config = tmp_path / "check.toml"
    config.write_text(check_config(tmp_path, simulator).read_text().replace(f'database = "{tmp_path / "a.db"}"\n', ""))
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}

    def check(*extra):
        return subprocess.run([sys.executable, "-m", "alerter", "check", "--json", "--config", str(config), *extra],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    out = check()
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)[0]["level"] == "warning"
    assert sorted(p.name for p in tmp_path.rglob("*") if ".db" in p.name) == []

    out = check("--notify")
    assert out.returncode == 1, out.stderr
    with sqlite3.connect(tmp_path / "alerter.db") as db:
        assert [row[0] for row in db.execute("SELECT level FROM alerts WHERE account = 'main'")] == ["warning"]

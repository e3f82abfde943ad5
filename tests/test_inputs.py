"""Hostile input on the command line: every command, every option, gets one `error:` line and a
non-zero exit code, never a traceback or a hang. And `validate` refuses what `run` refuses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import inline_toml

from alerter.cli import main

GOOD = '[daemon]\ndatabase = "{db}"\n[[accounts]]\nname = "a"\nexchange = "binanceusdm"\napi_key = "k"\nsecret = "s"\n'


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """Hostile files by name, plus a good config whose database does not exist."""
    (tmp_path / "latin1.toml").write_bytes('[daemon]\ndatabase = "café.db"\n'.encode("latin-1"))
    (tmp_path / "big.toml").write_bytes(b"# padding\n" * 110_000)  # 1.1 MB of comments: valid TOML
    (tmp_path / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "broken.toml").write_text("[daemon\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "secret-zero.toml").write_text(GOOD.format(db=tmp_path / "a.db").replace('"s"', '"file:/dev/zero"'))
    (tmp_path / "good.toml").write_text(GOOD.format(db=tmp_path / "a.db"))
    for path in tmp_path.iterdir():
        if path.is_file():
            path.chmod(0o600)
    return {p.name: str(p) for p in tmp_path.iterdir()} | {"/dev/zero": "/dev/zero"}


def cli(capsys, *argv: str) -> tuple[int, str]:
    """`alerter ARGV` in-process: (exit code, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def assert_one_error(code: int, err: str, expected_code: int, expected: str) -> None:
    """Exactly one line, the error, and no traceback (argparse's usage block is left out too)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error: " in line]
    assert lines == errors and len(errors) == 1, err
    assert expected in errors[0], err
    assert code == expected_code, err


# ---------------------------------------------------------------- the configuration file

CONFIG_FILES = [
    ("latin1.toml", "latin1.toml: is not UTF-8 text (byte 0xe9 at line 2, column 16); save it as UTF-8"),
    ("/dev/zero", "/dev/zero: is a device, not a regular file"),
    ("fifo", "fifo: is a named pipe (FIFO), not a regular file"),
    ("dir", "dir: is a directory, not a regular file"),
    ("big.toml", "big.toml: is too large (1,100,000 bytes; at most 1,048,576)"),
    ("deep.toml", "deep.toml: not valid TOML: nested too deeply"),
    ("broken.toml", "broken.toml: not valid TOML"),
    ("absent.toml", "absent.toml: no such file"),
    ("", "--config: empty path"),
    ("secret-zero.toml", "accounts[0].secret: secret file /dev/zero is a device, not a regular file"),
]
# `check` reports a configuration it cannot use as "blind" (3), like an account it cannot poll
COMMANDS = [("validate", 2), ("run", 2), ("status", 2), ("history", 2), ("whatif", 2), ("test-notify", 2), ("check", 3)]


@pytest.mark.parametrize("command, code", COMMANDS)
@pytest.mark.parametrize("name, expected", CONFIG_FILES, ids=[n or "empty" for n, _ in CONFIG_FILES])
def test_a_config_that_cannot_be_read_is_one_line(capsys, files, tmp_path, command, code, name, expected):
    path = files.get(name, str(tmp_path / name) if name else "")
    assert_one_error(*cli(capsys, command, "--config", path), code, expected)


@pytest.mark.parametrize("name", ["/dev/zero", "fifo"])
def test_run_neither_hangs_nor_reads_a_device_or_a_fifo(files, name):
    """The process is the point: a blocking open() or an endless read would never return."""
    out = subprocess.run([sys.executable, "-m", "alerter", "run", "--config", files[name]],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1, out.stderr


def test_a_config_with_a_byte_order_mark_loads(capsys, tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.format(db=tmp_path / "a.db").encode())
    path.chmod(0o600)
    code, err = cli(capsys, "validate", "--config", str(path))
    assert code == 0, err


# ---------------------------------------------------------------- command options

OPTIONS = [
    (["demo", "--speed", "0"], "argument --speed: must be between 0.01 and 100, got '0'"),
    (["demo", "--speed", "-1"], "argument --speed: must be between 0.01 and 100, got '-1'"),
    (["demo", "--speed", "nan"], "argument --speed: must be between 0.01 and 100, got 'nan'"),
    (["demo", "--speed", "inf"], "argument --speed: must be between 0.01 and 100, got 'inf'"),
    (["demo", "--speed", "1e-320"], "argument --speed: must be between 0.01 and 100, got '1e-320'"),
    (["demo", "--speed", "fast"], "argument --speed: expected a number such as 10, got 'fast'"),
    (["simulate", "--port", "99999"], "argument --port: must be between 0 and 65535, got '99999'"),
    (["simulate", "--port", "-1"], "argument --port: must be between 0 and 65535, got '-1'"),
    (["simulate", "--port", "http"], "argument --port: expected a port number, got 'http'"),
    (["simulate", "--speed", "-1"], "argument --speed: must be a finite number of 0 (a frozen market) or more, got '-1'"),
    (["simulate", "--speed", "nan"], "argument --speed: must be a finite number of 0 (a frozen market) or more, got 'nan'"),
    (["simulate", "--speed", "inf"], "argument --speed: must be a finite number of 0 (a frozen market) or more, got 'inf'"),
    (["simulate", "--scenario", "/dev/zero"], "scenario '/dev/zero' is a device, not a regular file"),
    (["simulate", "--scenario", "FILE:fifo"], "is a named pipe (FIFO), not a regular file"),
    (["simulate", "--scenario", "FILE:latin1.toml"], "is not UTF-8 text (byte 0xe9 at line 2, column 16)"),
    (["simulate", "--scenario", "FILE:deep.toml"], "invalid TOML: nested too deeply"),
    (["history", "--config", "FILE:good.toml", "--since", "nan"], "--since: expected a duration like '60s', '2m' or '6h', got 'nan'"),
    (["history", "--config", "FILE:good.toml", "--since", "99999999999d"], "--since: too long a duration, got '99999999999d'"),
    (["whatif", "--config", "FILE:good.toml", "--all", "nan"], "expected a move like -20% or +5%, got 'nan'"),
    (["whatif", "--config", "FILE:good.toml", "--move", "BTC=1e400%"], "expected a move like -20% or +5%, got '1e400%'"),
    (["whatif", "--config", "FILE:good.toml", "--all", "-100%"], "'-100%': a price cannot fall by 100 % or more"),
    (["test-notify", "--config", "FILE:good.toml", "--channel", "nope"], "--channel: no channel named 'nope' (channels: none)"),
    (["validate", "--nope"], "unrecognized arguments: --nope"),
]


@pytest.mark.parametrize("argv, expected", OPTIONS, ids=[" ".join(a[:1] + a[-2:]).replace("FILE:", "") for a, _ in OPTIONS])
def test_a_bad_option_value_is_one_line_exit_2(capsys, files, argv, expected):
    argv = [files[a.removeprefix("FILE:")] if a.startswith("FILE:") else a for a in argv]
    assert_one_error(*cli(capsys, *argv), 2, expected)


def test_demo_refuses_a_channel_url_that_run_would_refuse(capsys):
    code, err = cli(capsys, "demo", "--speed", "100", "--channel", "notascheme://host/x")
    assert_one_error(code, err, 2, "error: channels[1].url: unknown apprise scheme notascheme://")


# ---------------------------------------------------------------- validate refuses what run refuses

ACCOUNT = {"name": "a", "exchange": "binanceusdm", "api_key": "AKIA-LITERAL-KEY", "secret": "LITERAL-SECRET-VALUE"}
CHANNEL = {"name": "c", "url": "json://127.0.0.1:9/hook"}
REFUSED_AT_START = [
    ({"channels": [CHANNEL | {"url": "notascheme://host/x"}]}, "channels[0].url: unknown apprise scheme notascheme://"),
    ({"channels": [CHANNEL | {"url": "jsno://host/x"}]}, "channels[0].url: unknown apprise scheme jsno:// (did you mean json://"),
    ({"channels": [CHANNEL | {"url": "tgram://notAtokenSecret77/123"}]}, "channels[0].url: "),
    ({"accounts": [ACCOUNT | {"exchange": "bitstamp", "profile": "generic", "balance_includes_pnl": False}]},
     "accounts[0].exchange: ccxt's bitstamp cannot fetch positions"),
    ({"accounts": [ACCOUNT | {"ccxt": {"options": 5}}]}, "accounts[0].ccxt: ccxt cannot build binanceusdm with this table (TypeError"),
    ({"accounts": [ACCOUNT | {"ccxt": {"rateLimit": -1}}]}, "accounts[0].ccxt: ccxt cannot build binanceusdm with this table (ExchangeError"),
]


def config_file(tmp_path: Path, config: dict, name: str = "c.toml") -> Path:
    lines = [f'[daemon]\ndatabase = "{tmp_path / "a.db"}"']
    for section in ("accounts", "channels"):
        for entry in config.get(section, []):
            lines.append(f"[[{section}]]\n" + "\n".join(f"{k} = {inline_toml(v)}" for k, v in entry.items()))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("config, expected", REFUSED_AT_START, ids=[e.split(" (")[0] for _, e in REFUSED_AT_START])
def test_validate_refuses_what_run_refuses_at_start(capsys, tmp_path, config, expected):
    code, err = cli(capsys, "validate", "--config", str(config_file(tmp_path, config)))
    assert_one_error(code, err, 2, expected)
    assert "LITERAL" not in err and "notAtokenSecret77" not in err


def test_run_and_validate_refuse_with_the_same_lines(capsys, tmp_path):
    """All of the table in one file: the real `run` process prints exactly what validate prints,
    and never creates its database."""
    merged = {"accounts": [], "channels": []}
    for i, (config, _) in enumerate(REFUSED_AT_START):
        for section in merged:
            merged[section] += [entry | {"name": f"{entry['name']}{i}"} for entry in config.get(section, [])]
    path = config_file(tmp_path, merged)
    code, validate_err = cli(capsys, "validate", "--config", str(path))
    run = subprocess.run([sys.executable, "-m", "alerter", "run", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert (code, run.returncode) == (2, 2), run.stderr
    assert run.stderr.splitlines() == validate_err.splitlines()
    unindexed = sorted(re.sub(r"\[\d+\]", "[]", line) for line in validate_err.splitlines())
    expected = sorted("error: " + re.sub(r"\[\d+\]", "[]", e) for _, e in REFUSED_AT_START)
    assert len(unindexed) == len(expected) and all(line.startswith(e) for line, e in zip(unindexed, expected, strict=True)), validate_err
    assert not (tmp_path / "a.db").exists()

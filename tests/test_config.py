"""Configuration: the shipped example loads; every broken file gets a one-line error naming its key."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from alerter.config import ConfigError, build_settings, load_settings
from alerter.values import parse_duration, parse_ratio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = {"BINANCE_API_KEY": "k-example", "BINANCE_API_SECRET": "s-example", "ALERTER_TELEGRAM_URL": "tgram://1:tok/2"}

ACCOUNT = 'name = "a"\nexchange = "binanceusdm"\napi_key = "AKIA-LITERAL-KEY"\nsecret = "LITERAL-SECRET-VALUE"\n'
CHANNEL = 'name = "c"\nurl = "json://127.0.0.1:9/hook"\n'


def write(tmp_path, text, name="alerter.toml"):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def validate(path, env=None) -> subprocess.CompletedProcess:
    """`alerter validate --config PATH`, in-process (its exit code and output are main()'s; the
    process boundary is tested with `run` below and in test_cli)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    from unittest import mock

    from alerter.cli import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "--config", str(path)])
    return subprocess.CompletedProcess(["alerter", "validate"], code, out.getvalue(), err.getvalue())


def test_example_file_loads(monkeypatch):
    for k, v in EXAMPLE_ENV.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.daemon.poll_interval == timedelta(seconds=60)
    assert (settings.thresholds.warning, settings.thresholds.call, settings.thresholds.critical) == (0.5, 0.7, 0.85)
    assert settings.accounts[0].api_key.get_secret_value() == "k-example"
    assert settings.repeat.critical == timedelta(minutes=5)


def test_validate_example_exits_0_and_masks_secrets():
    result = validate(ROOT / "config.example.toml", EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    assert "binance-main" in result.stdout and "tgram://********" in result.stdout
    for secret in ("k-example", "s-example", "tok"):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize("value, seconds", [("60s", 60), ("2m", 120), ("1h30m", 5400), ("1d", 86400), (90, 90), ("500ms", 0.5)])
def test_durations(value, seconds):
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value, ratio", [(0.7, 0.7), ("70%", 0.7), ("5%", 0.05), ("0.85", 0.85), (1, 1.0)])
def test_ratios(value, ratio):
    assert parse_ratio(value) == pytest.approx(ratio)


def test_secret_references(tmp_path, monkeypatch):
    (tmp_path / "key").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sec").write_text("from-cred")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("HOOK", "json://127.0.0.1/x")
    s = build_settings({
        "accounts": [{"name": "a", "exchange": "okx", "api_key": f"file:{tmp_path / 'key'}", "secret": "cred:sec", "password": "pw"}],
        "channels": [{"name": "c", "url": "env:HOOK"}],
    })
    a = s.accounts[0]
    assert (a.api_key.get_secret_value(), a.secret.get_secret_value(), a.password.get_secret_value()) == ("from-file", "from-cred", "pw")
    assert "from-file" not in repr(s) and "from-cred" not in str(a)


def test_env_overrides_daemon_keys(monkeypatch):
    monkeypatch.setenv("ALERTER_DAEMON__POLL_INTERVAL", "15s")
    assert build_settings({"daemon": {"poll_interval": "2m"}}).daemon.poll_interval == timedelta(seconds=15)


def test_database_default_under_systemd(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert build_settings({}).daemon.database == tmp_path / "alerter.db"


BROKEN = [
    ("[daemon]\npol_interval = '5s'\n", "daemon.pol_interval: unknown key (did you mean 'poll_interval'?)"),
    ("[daemon]\npoll_interval = 'soon'\n", "daemon.poll_interval: expected a duration"),
    ("[daemon]\npoll_interval = -5\n", "daemon.poll_interval: must not be negative"),
    ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level:"),
    ("[daemon]\nblind_after = 0\n", "daemon.blind_after:"),
    ("[daemon]\nblind_after = 'three'\n", "daemon.blind_after:"),
    ("[deamon]\n", "deamon: unknown key (did you mean 'daemon'?)"),
    ("[thresholds]\ncall = '45%'\n", "thresholds.call: 45 % must be above warning (50 %)"),
    ("[thresholds]\ncritical = '65%'\n", "thresholds.critical: 65 % must be above call (70 %)"),
    ("[thresholds]\ncritical = 1.0\n", "thresholds.critical: 100 % must be below 100 %"),
    ("[thresholds]\ntarget = '55%'\n", "thresholds.target: 55 % must be above 0 % and below warning (50 %)"),
    ("[thresholds]\nwarning = 70\n", "thresholds.warning: must be between 0 and 1"),
    ("[thresholds]\nwarning = 'seventy'\n", "thresholds.warning: expected a fraction"),
    ("[thresholds]\nwarnig = 0.4\n", "thresholds.warnig: unknown key (did you mean 'warning'?)"),
    ("[repeat]\ncall = 'often'\n", "repeat.call: expected a duration"),
    ("[[accounts]]\n" + ACCOUNT.replace('name = "a"\n', ""), "accounts[0].name: required key is missing"),
    ("[[accounts]]\n" + ACCOUNT.replace("binanceusdm", "binanceusd"), "accounts[0].exchange: unknown exchange id 'binanceusd' (closest: binanceusdm; supported: aave, binance, binancecoinm, binanceusdm, bitget, bybit, compound, deribit, gate, hyperliquid, krakenfutures, kucoinfutures, morpho, okx, spark)"),
    ("[[accounts]]\n" + ACCOUNT.replace('"binanceusdm"', '"binance"') + "ccxt = { options = { defaultType = 'future' } }\n",
     "accounts[0].exchange: 'binance' with defaultType = 'future': these are Binance USDⓈ-M futures: use exchange = \"binanceusdm\""),
    ("[[accounts]]\n" + ACCOUNT.replace("secret = ", "secrit = "), "accounts[0].secrit: unknown key (did you mean 'secret'?)"),
    ("[[accounts]]\n" + ACCOUNT.replace('"LITERAL-SECRET-VALUE"', '"env:ALERTER_TEST_UNSET_VAR"'), "accounts[0].secret: environment variable ALERTER_TEST_UNSET_VAR is not set"),
    ("[[accounts]]\n" + ACCOUNT.replace('"LITERAL-SECRET-VALUE"', '"file:/nonexistent/secret"'), "accounts[0].secret: cannot read secret file /nonexistent/secret"),
    ("[[accounts]]\n" + ACCOUNT.replace('"LITERAL-SECRET-VALUE"', '"cred:bybit-secret"'), "accounts[0].secret: credential bybit-secret: $CREDENTIALS_DIRECTORY is not set"),
    ("[[accounts]]\n" + ACCOUNT.replace('"LITERAL-SECRET-VALUE"', "12345"), "accounts[0].secret: expected a string"),
    ("[[accounts]]\n" + ACCOUNT + "[[accounts]]\n" + ACCOUNT, "accounts[1].name: duplicate account name 'a'"),
    ("[[accounts]]\n" + ACCOUNT + "thresholds = { call = '40%' }\n", "accounts[0].thresholds.call: 40 % must be above warning (50 %)"),
    ("[[accounts]]\n" + ACCOUNT + "thresholds = { cal = '60%' }\n", "accounts[0].thresholds.cal: unknown key (did you mean 'call'?)"),
    ("[[accounts]]\n" + ACCOUNT + "poll_interval = 'x'\n", "accounts[0].poll_interval: expected a duration"),
    ("[[accounts]]\n" + ACCOUNT + "ccxt = 5\n", "accounts[0].ccxt:"),
    ("accounts = 5\n", "accounts:"),
    ("[[channels]]\n" + CHANNEL.replace("json://127.0.0.1:9/hook", "not a url"), "channels[0].url: not an apprise URL"),
    ("[[channels]]\n" + CHANNEL + "min_level = 'calls'\n", "channels[0].min_level: Input should be 'warning', 'call' or 'critical', got 'calls'"),
    ("[[channels]]\n" + CHANNEL + "accounts = ['ghost']\n", "channels[0].accounts: no account named 'ghost'"),
    ("[[channels]]\n" + CHANNEL + "[[channels]]\n" + CHANNEL, "channels[1].name: duplicate channel name 'c'"),
    ("[[channels]]\n" + CHANNEL + "level = 'call'\n", "channels[0].level: unknown key"),
    ("[daemon\n", "not valid TOML"),
]


@pytest.mark.parametrize("text, expected", BROKEN, ids=[e.split(":")[0] for _, e in BROKEN])
def test_broken_configs(tmp_path, text, expected):
    result = validate(write(tmp_path, text))
    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith("error: ")
    assert "LITERAL-SECRET-VALUE" not in result.stderr and "AKIA-LITERAL-KEY" not in result.stderr


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        build_settings({"thresholds": {"call": "45%", "target": "60%"}, "accounts": [
            {"name": "a", "exchange": "nope", "api_key": "k", "secret": "s"},
            {"name": "a", "exchange": "okx", "api_key": "k", "secret": "s"},
        ]})
    assert e.value.problems == [
        "thresholds.call: 45 % must be above warning (50 %)",
        "thresholds.target: 60 % must be above 0 % and below warning (50 %)",
        "accounts[0].exchange: unknown exchange id 'nope' (supported: aave, binance, binancecoinm, binanceusdm, bitget, bybit, compound, deribit, gate, hyperliquid, krakenfutures, kucoinfutures, morpho, okx, spark)",
        "accounts[1].name: duplicate account name 'a'",
        "accounts[1].password: OKX needs it (the API key's passphrase)",
    ]


# ---------------------------------------------------------------- profiles: no silent generic guess

SUPPORTED = "supported: aave, binance, binancecoinm, binanceusdm, bitget, bybit, compound, deribit, gate, hyperliquid, krakenfutures, kucoinfutures, morpho, okx, spark"
REFUSED = [
    ({"exchange": "binance"}, "accounts[0].exchange: 'binance': a plain spot wallet has no margin to watch: "
                              'set ccxt.options.defaultType = "margin" (cross margin), marginMode = "isolated" (isolated margin) '
                              'or portfolioMargin = true'),
    ({"exchange": "kraken"}, f"accounts[0].exchange: no profile for 'kraken' (closest: krakenfutures; {SUPPORTED});"),
    ({"exchange": "binance", "ccxt": {"options": {"defaultType": "swap"}}}, 'use exchange = "binanceusdm"'),
    # a generic account on Binance's futures endpoints still gets the profile's figures, not a guess
    ({"exchange": "binance", "profile": "generic", "balance_includes_pnl": True, "ccxt": {"options": {"defaultType": "future"}}},
     "accounts[0].exchange: 'binance' with defaultType = 'future': these are Binance USDⓈ-M futures: use exchange = \"binanceusdm\""),
    ({"exchange": "binance", "ccxt": {"options": {"defaultType": "delivery"}}},
     "accounts[0].exchange: 'binance' with defaultType = 'delivery': these are Binance COIN-M futures: use exchange = \"binancecoinm\""),
    ({"exchange": "binance", "ccxt": {"options": {"defaultType": "future", "defaultSubType": "inverse"}}}, 'use exchange = "binancecoinm"'),
    ({"exchange": "binancecoinm", "ccxt": {"options": {"defaultSubType": "linear"}}},
     "accounts[0].ccxt.options.defaultSubType: 'linear' is not an account the binancecoinm profile reads"),
    ({"exchange": "binanceusdm", "ccxt": {"options": {"defaultSubType": "inverse"}}},
     "accounts[0].ccxt.options.defaultSubType: 'inverse' is not an account the binanceusdm profile reads (defaultSubType may be 'linear', or left out)"),
    ({"exchange": "bybit", "ccxt": {"options": {"defaultType": "spot"}}}, "accounts[0].ccxt.options.defaultType: 'spot' is not an account the bybit profile reads"),
    ({"exchange": "okx", "password": "p", "ccxt": {"options": {"defaultType": "funding"}}}, "accounts[0].ccxt.options.defaultType: 'funding' is not an account the okx profile reads"),
    ({"exchange": "okx"}, "accounts[0].password: OKX needs it (the API key's passphrase)"),
    ({"exchange": "kraken", "profile": "generic"}, 'accounts[0].balance_includes_pnl: required with profile = "generic": true if ccxt\'s balance total for kraken'),
    ({"exchange": "kraken", "profile": "generic", "balance_includes_pnl": "yes"}, "accounts[0].balance_includes_pnl: Input should be a valid boolean"),
    ({"exchange": "kraken", "profile": "kraken"}, "accounts[0].profile: Input should be 'generic'"),
    ({"exchange": "okx", "password": "p", "profile": "generic", "balance_includes_pnl": True}, 'accounts[0].profile: okx has its own profile (OKX): remove profile = "generic"'),
    ({"exchange": "bybit", "balance_includes_pnl": False}, 'accounts[0].balance_includes_pnl: only with profile = "generic"'),
    ({"exchange": "kraken", "profile": "generic", "balance_includes_pnl": True, "between_polls": "reprice"},
     "accounts[0].between_polls: cannot re-price kraken positions faithfully from mark prices (supported: binanceusdm, bybit, okx)"),
    ({"exchange": "krakn", "profile": "generic", "balance_includes_pnl": True}, f"accounts[0].exchange: unknown exchange id 'krakn' (closest: kraken; {SUPPORTED})"),
]


@pytest.mark.parametrize("account, expected", REFUSED, ids=[f"{a['exchange']}-{i}" for i, (a, _) in enumerate(REFUSED)])
def test_accounts_without_a_profile_are_refused_in_one_line(account, expected):
    with pytest.raises(ConfigError) as e:
        build_settings({"accounts": [{"name": "a", "api_key": "k", "secret": "s"} | account]})
    assert len(e.value.problems) == 1 and "\n" not in e.value.problems[0], e.value.problems
    assert e.value.problems[0].startswith(expected) or expected in e.value.problems[0], e.value.problems[0]


def test_a_generic_account_declares_its_balance_convention_and_is_approximate():
    s = build_settings({"accounts": [
        {"name": "d", "exchange": "kraken", "api_key": "k", "secret": "s", "profile": "generic", "balance_includes_pnl": True},
        {"name": "o", "exchange": "okx", "api_key": "k", "secret": "s", "password": "p", "ccxt": {"options": {"defaultType": "swap"}}},
    ]})
    from alerter.plan import plans

    generic, okx = s.accounts
    p = plans(s)
    assert (generic.approximate, generic.balance_includes_pnl, p["d"].approximate, p["d"].between_polls) == (True, True, True, "off")
    assert (okx.approximate, p["o"].approximate, p["o"].between_polls) == (False, False, "reprice")


def test_run_refuses_an_account_without_a_profile_as_validate_does(tmp_path):
    path = write(tmp_path, f'[daemon]\ndatabase = "{tmp_path / "a.db"}"\n[[accounts]]\n' + ACCOUNT.replace('"binanceusdm"', '"binance"')
                 + "ccxt = { options = { defaultType = 'future' } }\n")
    run = subprocess.run([sys.executable, "-m", "alerter", "run", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr == validate(path).stderr
    assert run.stderr == "error: accounts[0].exchange: 'binance' with defaultType = 'future': these are Binance USDⓈ-M futures: use exchange = \"binanceusdm\"\n"
    assert not (tmp_path / "a.db").exists()


def test_validate_warns_that_a_generic_account_is_approximate_and_shows_each_currency(tmp_path):
    path = write(tmp_path, "[[accounts]]\n" + ACCOUNT + "[[accounts]]\n" + ACCOUNT.replace('"a"', '"kraken-main"').replace('"binanceusdm"', '"kraken"')
                 + 'profile = "generic"\nbalance_includes_pnl = true\n')
    result = validate(path)
    assert result.returncode == 0, result.stderr
    assert ('warning: accounts[1] (kraken-main): profile = "generic": its figures are approximate (ccxt\'s unified fields, '
            "not kraken's own margin figures); its alerts and status rows say so") in result.stderr.splitlines()
    lines = result.stdout.splitlines()
    figures = [line.strip() for line in lines if line.strip().startswith("figures:")]
    assert figures == [
        "figures: Binance USDⓈ-M profile; currency USDT (USD in multi-assets mode)",
        'figures: APPROXIMATE: profile "generic", ccxt\'s unified fields; currency the settle currency of the positions\' markets '
        "(without positions: the balance's only non-zero currency)",
    ]
    assert "warning: accounts[0]" not in result.stderr  # the profiled account is not approximate


def test_missing_file_is_one_line(tmp_path):
    result = validate(tmp_path / "absent.toml")
    assert result.returncode == 2 and result.stderr.strip().endswith("absent.toml: no such file")


def test_literal_secrets_in_a_readable_file_warn(tmp_path):
    path = write(tmp_path, "[[accounts]]\n" + ACCOUNT)
    assert "readable by group or others" not in validate(path).stderr
    path.chmod(0o644)
    result = validate(path)
    assert result.returncode == 0
    assert "warning:" in result.stderr and "accounts[0].api_key" in result.stderr and "chmod 600" in result.stderr

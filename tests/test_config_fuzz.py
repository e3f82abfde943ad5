"""More broken configurations than test_config.py's, through `alerter validate` in-process: every
one exits 2 with one "error: <key path>: …" line per problem and no traceback. Then hypothesis
mutates a valid configuration (a leaf of the wrong type, an unknown key, a key deleted) and
`build_settings` must either accept it or raise ConfigError whose every line names a key path of
the mutated document — never another exception.

The values below "accepted, but should not be" were found by these tests (zero durations,
overflowing ones, empty secrets and paths, a channel for no account) and are now refused."""

from __future__ import annotations

import copy
import math
import re
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from alerter.cli import main
from alerter.config import ConfigError, Settings, build_settings

ACCOUNT = 'name = "a"\nexchange = "binanceusdm"\napi_key = "AKIA-LITERAL-KEY"\nsecret = "LITERAL-SECRET-VALUE"\n'
CHANNEL = 'name = "c"\nurl = "json://127.0.0.1:9/hook"\n'
A = "[[accounts]]\n" + ACCOUNT
C = "[[channels]]\n" + CHANNEL


@pytest.fixture(autouse=True)
def no_environment_overrides(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("ALERTER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def validate(tmp_path, capsys, text: str) -> tuple[int, str, str]:
    path = tmp_path / "alerter.toml"
    path.write_text(text)
    path.chmod(0o600)
    code = main(["validate", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


BROKEN = [
    # [daemon]: wrong types, arrays where a table is due, impossible values
    ("[daemon]\ndatabase = 5\n", "daemon.database: Input is not a valid path"),
    ("[daemon]\ndatabase = ['a.db']\n", "daemon.database:"),
    ("[daemon]\npoll_interval = true\n", "daemon.poll_interval: expected a duration"),
    ("[daemon]\npoll_interval = [60]\n", "daemon.poll_interval: expected a duration"),
    ("[daemon]\nrequest_timeout = { s = 10 }\n", "daemon.request_timeout: expected a duration"),
    ("[daemon]\nhistory_retention = 2024-01-01\n", "daemon.history_retention: expected a duration"),
    ("[daemon]\nhistory_retention = '-1d'\n", "daemon.history_retention: expected a duration"),
    ("[daemon]\nalert_expiry = '1h30'\n", "daemon.alert_expiry: expected a duration"),
    ("[daemon]\nlog_level = 10\n", "daemon.log_level: Input should be"),
    ("[daemon]\nlog_level = 'DEBUGGING'\n", "daemon.log_level: Input should be"),
    ("[daemon]\nblind_after = -1\n", "daemon.blind_after: Input should be greater than or equal to 1"),
    ("[daemon]\nblind_after = 2.5\n", "daemon.blind_after: Input should be a valid integer"),
    ("daemon = 'fast'\n", "daemon: Input should be a valid dictionary"),
    ("[[daemon]]\npoll_interval = '5s'\n", "daemon: Input should be a valid dictionary"),
    # [thresholds]: ratios out of range, of the wrong type, inconsistent
    ("[thresholds]\nwarning = '150%'\n", "thresholds.warning: must be between 0 and 1"),
    ("[thresholds]\ncritical = 1.5\n", "thresholds.critical: must be between 0 and 1"),
    ("[thresholds]\nhysteresis = -0.05\n", "thresholds.hysteresis: must be between 0 and 1"),
    ("[thresholds]\ncall = true\n", "thresholds.call: expected a fraction"),
    ("[thresholds]\ntarget = '40 percent'\n", "thresholds.target: expected a fraction"),
    ("[thresholds]\nhysteresis = '60%'\n", "thresholds.hysteresis: 60 % must be below warning (50 %)"),
    ("[thresholds]\ntarget = 0\n", "thresholds.target: 0 % must be above 0 %"),
    ("thresholds = [0.5, 0.7, 0.85]\n", "thresholds: Input should be a valid dictionary"),
    # [repeat]
    ("[repeat]\ncritical = -5\n", "repeat.critical: must not be negative"),
    ("[repeat]\nblind = false\n", "repeat.blind: expected a duration"),
    ("[repeat]\ncall = ['30m']\n", "repeat.call: expected a duration"),
    ("[repeat]\nwarnings = '6h'\n", "repeat.warnings: unknown key (did you mean 'warning'?)"),
    # [[accounts]]
    ("[accounts]\n" + ACCOUNT, "accounts: Input should be a valid list"),
    (A.replace('name = "a"', 'name = ""'), "accounts[0].name: String should have at least 1 character"),
    (A.replace('name = "a"', "name = 5"), "accounts[0].name: Input should be a valid string"),
    (A.replace('"binanceusdm"', "['binanceusdm']"), "accounts[0].exchange: Input should be a valid string"),
    (A.replace('"AKIA-LITERAL-KEY"', "true"), "accounts[0].api_key: expected a string"),
    ("[[accounts]]\nname = 'a'\nexchange = 'okx'\npassword = 123\n", "accounts[0].password: expected a string"),
    (A + "thresholds = '60%'\n", "accounts[0].thresholds: Input should be a valid dictionary"),
    (A + "thresholds = { critical = '120%' }\n", "accounts[0].thresholds.critical: must be between 0 and 1"),
    (A + "thresholds = { warning = '80%' }\n", "accounts[0].thresholds.call: 70 % must be above warning (80 %)"),
    (A + "ccxt = 'urls'\n", "accounts[0].ccxt: Input should be a valid dictionary"),
    (A + "ccxt = [1, 2]\n", "accounts[0].ccxt: Input should be a valid dictionary"),
    (A + "poll_interval = -1\n", "accounts[0].poll_interval: must not be negative"),
    (A + "[[accounts.positions]]\nsymbol = 'BTCUSDT'\n", "accounts[0].positions: unknown key"),
    (A + A.replace('name = "a"', 'name = "b"').replace('"binanceusdm"', "5"), "accounts[1].exchange: Input should be a valid string"),
    # [[channels]]
    ("channels = 'json://127.0.0.1/x'\n", "channels: Input should be a valid list"),
    ("[channels]\n" + CHANNEL, "channels: Input should be a valid list"),
    (C.replace('name = "c"', 'name = ""'), "channels[0].name: String should have at least 1 character"),
    ("[[channels]]\nname = 'c'\n", "channels[0].url: required key is missing"),
    (C.replace('"json://127.0.0.1:9/hook"', "5"), "channels[0].url: expected a string"),
    (C.replace('"json://127.0.0.1:9/hook"', '"env:ALERTER_FUZZ_UNSET"'), "channels[0].url: environment variable ALERTER_FUZZ_UNSET is not set"),
    (C + "min_level = 'ok'\n", "channels[0].min_level: Input should be 'warning', 'call' or 'critical', got 'ok'"),
    (C + "min_level = ['call']\n", "channels[0].min_level: Input should be"),
    (A + C + "accounts = 'a'\n", "channels[0].accounts: Input should be a valid list"),
    (A + C + "accounts = [1]\n", "channels[0].accounts[0]: Input should be a valid string"),
    (A + C + "accounts = { a = true }\n", "channels[0].accounts: Input should be a valid list"),
    # the top level
    ("[alerts]\nx = 1\n", "alerts: unknown key"),
    ("verbose = true\n", "verbose: unknown key"),
    ("[acounts]\nname = 'a'\n", "acounts: unknown key (did you mean 'accounts'?)"),
]


def check_problems(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and all(re.match(r"error: \S+: \S", line) for line in lines), err
    assert any(expected in line for line in lines), err
    assert "LITERAL-SECRET-VALUE" not in err and "AKIA-LITERAL-KEY" not in err


@pytest.mark.parametrize("text, expected", BROKEN, ids=[f"{i:02}-{e.split(':')[0]}" for i, (_, e) in enumerate(BROKEN)])
def test_broken_config_is_one_line_per_problem_exit_2(tmp_path, capsys, text, expected):
    check_problems(*validate(tmp_path, capsys, text), expected)


def test_problems_in_every_section_are_reported_together(tmp_path, capsys):
    text = ("verbose = true\n[daemon]\npoll_interval = 'soon'\nblind_after = 0\n[thresholds]\nwarning = '150%'\n"
            "[repeat]\ncall = []\n" + A.replace('name = "a"', "name = 5") + C + "min_level = 'ok'\n")
    code, out, err = validate(tmp_path, capsys, text)
    check_problems(code, out, err, "verbose: unknown key")
    paths = sorted(line.split(": ")[1] for line in err.splitlines())
    assert paths == sorted(["verbose", "daemon.poll_interval", "daemon.blind_after", "thresholds.warning", "repeat.call",
                     "accounts[0].name", "channels[0].min_level"]), err


def test_unknown_apprise_scheme_is_refused_by_validate_as_by_run(tmp_path, capsys, monkeypatch):
    """validate makes run's start-up checks (it imports apprise for them): both refuse the URL."""
    import alerter.logs

    monkeypatch.setattr(alerter.logs, "setup_logging", lambda *a, **k: None)  # keep the test's logging as it is
    text = f'[daemon]\ndatabase = "{tmp_path / "never.db"}"\n' + C.replace("json://", "jsonn://")
    code, out, err = validate(tmp_path, capsys, text)
    check_problems(code, out, err, "channels[0].url: unknown apprise scheme jsonn:// (did you mean json://")
    code = main(["run", "--config", str(tmp_path / "alerter.toml")])
    out, err = capsys.readouterr()
    check_problems(code, out, err, "channels[0].url: unknown apprise scheme jsonn:// (did you mean json://")
    assert not (tmp_path / "never.db").exists()


# ---------------------------------------------------------------- once accepted, now refused

WRONGLY_ACCEPTED = [
    pytest.param("[daemon]\nalert_expiry = 0\n", "daemon.alert_expiry:", id="alert_expiry-0"),
    pytest.param("[daemon]\npoll_interval = '0s'\n", "daemon.poll_interval:", id="poll_interval-0"),
    pytest.param("[daemon]\nrequest_timeout = 0\n", "daemon.request_timeout:", id="request_timeout-0"),
    pytest.param("[daemon]\nhistory_retention = '0d'\n", "daemon.history_retention:", id="history_retention-0"),
    pytest.param(A + "poll_interval = '0s'\n", "accounts[0].poll_interval:", id="account-poll_interval-0"),
    pytest.param("[daemon]\ndatabase = ''\n", "daemon.database:", id="database-empty"),
    pytest.param(A.replace('"AKIA-LITERAL-KEY"', '""'), "accounts[0].api_key:", id="api_key-empty"),
    pytest.param(A + C + "accounts = []\n", "channels[0].accounts:", id="channel-accounts-empty"),
    pytest.param("[daemon]\nblind_after = true\n", "daemon.blind_after:", id="blind_after-true"),
]
CRASHES = [
    pytest.param("[daemon]\npoll_interval = inf\n", "daemon.poll_interval:", id="poll_interval-inf"),
    pytest.param("[daemon]\nrequest_timeout = 1e20\n", "daemon.request_timeout:", id="request_timeout-1e20"),
    pytest.param("[repeat]\ncritical = '99999999999d'\n", "repeat.critical:", id="repeat-99999999999d"),
    pytest.param(A + "poll_interval = 1e300\n", "accounts[0].poll_interval:", id="account-poll_interval-1e300"),
]


@pytest.mark.parametrize("text, expected", WRONGLY_ACCEPTED)
def test_nonsense_values_are_rejected(tmp_path, capsys, text, expected):
    check_problems(*validate(tmp_path, capsys, text), expected)


@pytest.mark.parametrize("text, expected", CRASHES)
def test_huge_durations_are_one_line_not_a_traceback(tmp_path, capsys, text, expected):
    check_problems(*validate(tmp_path, capsys, text), expected)


# ---------------------------------------------------------------- hypothesis: mutations of a valid config

VALID = {
    "daemon": {"database": "alerter.db", "poll_interval": "30s", "log_level": "info", "blind_after": 3,
               "request_timeout": "10s", "history_retention": "30d", "alert_expiry": "24h"},
    "thresholds": {"warning": "50%", "call": 0.7, "critical": "85%", "hysteresis": "5%", "target": 0.4},
    "repeat": {"warning": "6h", "call": "30m", "critical": "5m", "blind": "never"},
    "accounts": [
        {"name": "a", "exchange": "binanceusdm", "api_key": "k", "secret": "s", "thresholds": {"call": "65%"},
         "poll_interval": "1m", "ccxt": {"options": {"defaultType": "swap"}}},
        {"name": "b", "exchange": "okx", "api_key": "k2", "secret": "s2", "password": "p"},
    ],
    "channels": [
        {"name": "c", "url": "json://127.0.0.1/x", "min_level": "call", "accounts": ["a"]},
        {"name": "d", "url": "mailto://127.0.0.1?from=a@example.com&to=b@example.com"},
    ],
}


def schema_fields() -> set[str]:
    """Every key name any config model knows (for a semantic problem about a defaulted key)."""
    names: set[str] = set()
    todo: list = [Settings]
    while todo:
        model = todo.pop()
        for name, field in model.model_fields.items():
            names.add(name)
            stack = [field.annotation]
            while stack:
                annotation = stack.pop()
                if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in todo:
                    todo.append(annotation)
                stack += typing.get_args(annotation)
    return names


FIELDS = schema_fields()
SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def path_exists(path: str, doc) -> bool:
    """`accounts[0].thresholds.call` names a key of `doc`, or a schema key whose value was left
    to its default under a parent that exists."""
    if path == "(top level)":
        return True
    node, missing = doc, False
    for index, key in SEGMENT.findall(path):
        if missing:
            if key not in FIELDS:
                return False
            continue
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return False
            node = node[int(index)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, dict) and key in FIELDS:
            missing = True
        else:
            return False
    return True


def leaves(doc, prefix=()) -> list[tuple]:
    """Paths (tuples of keys and indexes) of every value in the document, containers included."""
    found = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found += leaves(value, (*prefix, key))
    return found


def containers(doc, prefix=()) -> list[tuple]:
    found = [prefix] if isinstance(doc, dict) else []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        found += containers(value, (*prefix, key))
    return found


def get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def bounded_numbers(limit: float):
    return st.one_of(st.integers(-limit, limit), st.floats(-limit, limit, allow_nan=False))


def toml_values(numbers):
    """Values a TOML file can hold (no None); strings avoid "env:"/"file:" references except on purpose."""
    text = st.one_of(
        st.text(st.characters(blacklist_characters=":", blacklist_categories=("Cs",)), max_size=12),
        st.sampled_from(["", " ", "-5s", "1e400s", "150%", "-1%", "inf", "nan", "never", "0", "0s",
                         "env:ALERTER_FUZZ_UNSET", "cred:x", "file:/nonexistent/alerter-fuzz", "://", "warning", "debug"]),
    )
    scalars = st.one_of(text, numbers, st.booleans(), st.dates(), st.times(), st.datetimes())
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=3)), max_leaves=5)


@st.composite
def mutated(draw, numbers):
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "add", "delete"]))
        if kind == "replace":
            paths = leaves(doc)
            if not paths:
                continue
            path = draw(st.sampled_from(paths))
            old = get(doc, path)
            get(doc, path[:-1])[path[-1]] = draw(toml_values(numbers).filter(lambda v, old=old: type(v) is not type(old)))
        elif kind == "add":
            path = draw(st.sampled_from(containers(doc)))
            key = draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
            get(doc, path).setdefault(key, draw(toml_values(numbers)))
        else:
            paths = [p for p in leaves(doc) if isinstance(get(doc, p[:-1]), dict)]
            if paths:
                path = draw(st.sampled_from(paths))
                del get(doc, path[:-1])[path[-1]]
    return doc


def check_mutation(doc) -> None:
    try:
        build_settings(doc)
    except ConfigError as e:
        assert e.problems
        for problem in e.problems:
            path, sep, message = problem.partition(": ")
            assert sep and message.strip(), problem
            assert path_exists(path, doc), f"{problem!r} names no key of {doc!r}"


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(bounded_numbers(10**6)))
def test_mutated_config_is_accepted_or_a_config_error_naming_its_keys(doc):
    check_mutation(doc)


DURATIONS = [("daemon", k) for k in ("poll_interval", "request_timeout", "history_retention", "alert_expiry")] + \
            [("repeat", k) for k in ("warning", "call", "critical", "blind")] + [("accounts", 0, "poll_interval")]


@settings(max_examples=50, deadline=None, derandomize=True, database=None, report_multiple_bugs=False)
@given(st.sampled_from(DURATIONS), st.one_of(st.floats(min_value=1e10), st.integers(min_value=10**15), st.just(math.inf),
                                            st.integers(min_value=10**10).map(lambda n: f"{n}d")))
def test_any_size_of_duration_is_accepted_or_a_config_error(path, value):
    doc = copy.deepcopy(VALID)
    get(doc, path[:-1])[path[-1]] = value
    check_mutation(doc)


def test_the_mutation_checker_itself():
    assert path_exists("accounts[0].thresholds.call", VALID)
    assert path_exists("thresholds.call", {"thresholds": {}})  # a defaulted key under a real parent
    assert path_exists("accounts[1].secret", {"accounts": [{}, {"name": "b"}]})  # required key missing
    assert not path_exists("accounts[2].name", VALID)
    assert not path_exists("nope.call", VALID)
    assert not path_exists("daemon.poll_interval.x", VALID)

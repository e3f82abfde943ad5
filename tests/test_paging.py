"""Paging only for critical: a channel's URL per level (`url_by_level`), falling back to `url`.

The daemon's alerts reach a real loopback webhook, whose request path tells which URL carried
them; `test-notify --level` runs as the user runs it; the "quiet warnings, loud critical" setup
of docs/alerting.md is loaded and handed to the installed apprise, which must read the priorities
that page promises."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from helpers import T0, harness, run

from alerter.config import build_settings, literal_secret_paths
from alerter.models import Alert, AlertKind, Level
from alerter.notify import Folded, Notifier, message_level

ROOT = Path(__file__).resolve().parent.parent


def paths(webhook):
    return [(r["path"], r["body"]["title"].split(" · ")[0]) for r in webhook.requests]


def test_critical_alerts_arrive_at_the_critical_url_and_the_rest_at_the_plain_one(tmp_path, webhook):
    channels = [{"name": "phone", "url": f"json://{webhook.url}/plain",
                 "url_by_level": {"critical": f"json://{webhook.url}/critical"}}]

    async def scenario():
        async with harness(tmp_path, channels) as h:
            await h.step(0.55)   # warning
            await h.step(0.78)   # call
            await h.step(0.92)   # critical
            await h.step(0.93, minutes=5)   # critical repeat
            await h.step(0.30)   # resolved (was critical)

    run(scenario())
    assert paths(webhook) == [
        ("/plain", "WARNING"), ("/plain", "CALL"), ("/critical", "CRITICAL"), ("/critical", "CRITICAL still active"),
        ("/critical", "RESOLVED"),  # the all-clear reaches the device that was paged
    ]


def test_a_warning_episode_never_touches_the_critical_url(tmp_path, webhook):
    channels = [{"name": "phone", "url": f"json://{webhook.url}/plain",
                 "url_by_level": {"critical": f"json://{webhook.url}/critical", "call": f"json://{webhook.url}/call"}}]

    async def scenario():
        async with harness(tmp_path, channels) as h:
            await h.step(0.55)   # warning
            await h.step(0.30)   # resolved (was warning)
            await h.step(0.78)   # call
            await h.step(0.30)   # resolved (was call)

    run(scenario())
    assert paths(webhook) == [("/plain", "WARNING"), ("/plain", "RESOLVED"), ("/call", "CALL"), ("/call", "RESOLVED")]


def alert(kind, level, scope="account", minutes=0):
    return Alert(kind=kind, level=level, account="main", scope=scope, created_at=T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize("alerts, level", [
    ([alert(AlertKind.RAISED, Level.WARNING)], Level.WARNING),
    # one message for the round: a warning that comes with a critical goes with it, loud
    ([alert(AlertKind.RAISED, Level.WARNING, "isolated:ETH/USDT:USDT:long"), alert(AlertKind.RAISED, Level.CRITICAL)], Level.CRITICAL),
    ([alert(AlertKind.RESOLVED, Level.CRITICAL)], Level.CRITICAL),
    ([alert(AlertKind.BLIND, Level.OK)], Level.OK),          # blind while ok: the plain url
    ([alert(AlertKind.BLIND, Level.CALL)], Level.CALL),      # blind while at call: call's URL
    ([alert(AlertKind.RESTORED, Level.CRITICAL)], Level.CRITICAL),
    ([alert(AlertKind.ACKNOWLEDGED, Level.CRITICAL)], Level.OK),  # your own "I'm on it" never pages you
    ([alert(AlertKind.UNACKNOWLEDGED, Level.CRITICAL)], Level.OK),  # nor does taking it back
    # a critical superseded before delivery (folded under the warning it fell back to) is not paged
    ([Folded(alert(AlertKind.RAISED, Level.WARNING, minutes=2), (alert(AlertKind.RAISED, Level.CRITICAL),))], Level.WARNING),
])
def test_the_message_level_is_that_of_its_most_urgent_current_alert(alerts, level):
    assert message_level(alerts) == level


def test_a_level_without_its_own_url_uses_url():
    settings = build_settings({"channels": [{"name": "c", "url": "json://h/plain", "url_by_level": {"call": "json://h/call"}}]})
    notifier = Notifier(settings.channels)
    assert {level: notifier.via("c", level) for level in Level} == {
        Level.OK: "url", Level.WARNING: "url", Level.CALL: "url_by_level.call", Level.CRITICAL: "url"}
    assert literal_secret_paths({"channels": [{"url": "json://h/p", "url_by_level": {"call": "json://h/c", "critical": "env:X"}}]}) == [
        "channels[0].url", "channels[0].url_by_level.call"]


@pytest.fixture
def root_logging():
    """test-notify in-process sets up logging (setup_logging): give the next tests theirs back."""
    import logging

    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


def test_test_notify_level_sends_by_that_levels_url(tmp_path, webhook, capsys, root_logging):
    from test_cli import alerter

    from alerter.cli import main

    config = tmp_path / "n.toml"
    config.write_text(f'[[channels]]\nname = "phone"\nurl = "json://{webhook.url}/plain"\n'
                      f'url_by_level = {{ critical = "json://{webhook.url}/critical-SECRETPATH" }}\n')
    config.chmod(0o600)
    critical = alerter("test-notify", "--config", str(config), "--level", "critical")  # as the user runs it
    assert critical.returncode == 0, critical.stderr
    assert re.search(r"phone\s+delivered \(by url_by_level\.critical\)", critical.stdout)
    assert "SECRETPATH" not in critical.stdout + critical.stderr
    assert main(["test-notify", "--config", str(config), "--level", "call"]) == 0
    assert re.search(r"phone\s+delivered \(by url\)", capsys.readouterr().out)  # no URL of its own: the plain one
    assert main(["test-notify", "--config", str(config)]) == 0
    assert re.search(r"phone\s+delivered$", capsys.readouterr().out.strip())
    assert [r["path"] for r in webhook.requests] == ["/critical-SECRETPATH", "/plain", "/plain"]
    assert webhook.requests[0]["body"]["title"] == "alerter test message (CRITICAL path)"
    assert webhook.requests[0]["body"]["type"] == "failure"
    with pytest.raises(SystemExit) as bad:
        main(["test-notify", "--config", str(config), "--level", "crit"])
    assert bad.value.code == 2 and "invalid choice: 'crit'" in capsys.readouterr().err


def test_each_url_is_checked_by_apprise_and_masked(tmp_path):
    from test_config import validate, write

    ok = validate(write(tmp_path, '[[channels]]\nname = "c"\nurl = "json://127.0.0.1:9/hook"\n'
                                  'url_by_level = { critical = "tgram://123456789:AAHsecretTOKENvalue/987654" }\n'))
    assert ok.returncode == 0, ok.stderr
    assert "critical alerts: tgram://********" in ok.stdout
    assert "AAHsecretTOKENvalue" not in ok.stdout + ok.stderr
    bad = validate(write(tmp_path, '[[channels]]\nname = "c"\nurl = "json://127.0.0.1:9/hook"\n'
                                   'url_by_level = { critcal = "json://h/x", warning = "nope" }\n'))
    assert bad.returncode == 2
    assert "channels[0].url_by_level.critcal: unknown key (did you mean 'critical'?)" in bad.stderr
    unusable = validate(write(tmp_path, '[[channels]]\nname = "c"\nurl = "json://127.0.0.1:9/hook"\n'
                                        'url_by_level = { warning = "nope", critical = "pover://USERKEYSECRET@APPTOKENSECRET?priority=emergency&interval=5" }\n'))
    assert unusable.returncode == 2
    assert "channels[0].url_by_level.warning: not an apprise URL" in unusable.stderr
    unusable = validate(write(tmp_path, '[[channels]]\nname = "c"\nurl = "json://127.0.0.1:9/hook"\n'
                                        'url_by_level = { critical = "pover://USERKEYSECRET@APPTOKENSECRET?priority=emergency&interval=5" }\n'))
    assert "channels[0].url_by_level.critical: apprise cannot use this pover:// URL: Pushover emergency interval must be at least 30 seconds" in unusable.stderr
    assert "USERKEYSECRET" not in unusable.stderr and "APPTOKENSECRET" not in unusable.stderr


# ---------------------------------------------------------------- the setup in docs/alerting.md

PLACEHOLDERS = {"BOT_TOKEN": "123456789:AAHexampleTOKEN", "CHAT_ID": "987654", "TOPIC": "margin-alerts",
                "USER_KEY": "u" * 30, "APP_TOKEN": "a" * 30}


def documented_setup() -> dict:
    import tomllib

    page = (ROOT / "docs" / "alerting.md").read_text()
    block = page.split("<!-- quiet warnings, loud critical -->", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    for name, value in PLACEHOLDERS.items():
        block = block.replace(name, value)
    return tomllib.loads(block)


def test_the_documented_setup_is_quiet_below_critical_and_loud_at_critical():
    """Each URL of the documented setup, as the installed apprise reads it."""
    from alerter.runtime import preflight

    settings = build_settings(documented_setup())
    preflight(settings)
    notifier = Notifier(settings.channels)  # the apprise plugin each level's message would go through
    plugins = {c.name: {level: notifier._for(c.name, level).apprise[0] for level in Level if level} for c in settings.channels}
    tg, ntfy, pover = plugins["telegram"], plugins["ntfy"], plugins["pushover"]
    assert [tg[level].silent for level in (Level.WARNING, Level.CALL, Level.CRITICAL)] == [True, True, False]
    assert [ntfy[level].priority for level in (Level.WARNING, Level.CALL, Level.CRITICAL)] == ["low", "default", "max"]
    assert [pover[level].priority for level in (Level.WARNING, Level.CALL, Level.CRITICAL)] == [-1, -1, 2]  # quiet, emergency
    assert (pover[Level.CRITICAL].interval, pover[Level.CRITICAL].expire) == (60, 3600)


def test_a_reload_names_a_changed_url_by_level_without_showing_it():
    from alerter.changes import describe_changes
    from alerter.plan import plans

    def settings(critical: str) -> object:
        return build_settings({"channels": [{"name": "hook", "url": "json://h/plain", "url_by_level": {"critical": critical}}]})

    old, new = settings("json://h/OLD-critical-token"), settings("json://h/NEW-critical-token")
    assert describe_changes(old, new, plans(old), plans(new)) == ["channel hook: url_by_level changed"]

"""alerter.lazy: one ccxt.pro exchange, sqlite-utils without numpy, one apprise plugin. What each
loads is read from `sys.modules` of a fresh interpreter; what it gives is used for real (the
simulator's websockets, a SQLite file, a loopback webhook)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alerter.lazy import declared_schemes, load_pro_exchange, plugin_files


def fresh(code: str) -> dict:
    """Run `code` in a new interpreter; it prints one JSON line, returned parsed."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


# ---------------------------------------------------------------- ccxt.pro

def test_one_pro_exchange_without_the_others_then_the_full_import_gives_the_same_class():
    got = fresh(
        "import json, sys\n"
        "from alerter.lazy import load_pro_exchange\n"
        "cls = load_pro_exchange('binanceusdm')\n"
        "pro = sorted(m for m in sys.modules if m.startswith('ccxt.pro.'))\n"
        "bare = 'ccxt.pro' in sys.modules\n"
        "import ccxt.pro\n"
        "print(json.dumps({'pro': pro, 'bare_left': bare, 'same': ccxt.pro.binanceusdm is cls,\n"
        "                  'all': len([m for m in sys.modules if m.startswith('ccxt.pro.')]), 'name': cls.__name__}))"
    )
    assert got["pro"] == ["ccxt.pro.binance", "ccxt.pro.binanceusdm"]
    assert not got["bare_left"]  # the bare package is gone: `import ccxt.pro` ran its own __init__
    assert got["same"] and got["name"] == "binanceusdm" and got["all"] > 50


@pytest.mark.parametrize("exchange_id", ["okx", "bybit", "binanceusdm"])
def test_load_pro_exchange_is_ccxt_pros_class(exchange_id):
    import ccxt.pro

    assert load_pro_exchange(exchange_id) is getattr(ccxt.pro, exchange_id)  # ccxt.pro loaded in full: its own


@pytest.mark.parametrize("exchange_id", ["nosuchexchange", "test", "__init__", "base", "../ccxt", ""])
def test_no_such_pro_exchange_is_none(exchange_id):
    got = fresh(f"import json\nfrom alerter.lazy import load_pro_exchange\nprint(json.dumps(load_pro_exchange({exchange_id!r}) is None))")
    assert got is True


def test_a_pro_exchange_loaded_alone_streams_from_the_simulator():
    """The class from a bare ccxt.pro (no `import ccxt.pro` in this interpreter) reads marks
    pushed by the simulator's Binance websocket."""
    got = fresh(
        "import asyncio, json, sys\n"
        "from alerter.lazy import load_pro_exchange\n"
        "from alerter.simulator import run_simulator\n"
        "async def main():\n"
        "    async with run_simulator({'name': 's', 'accounts': []}, mark_cadence=0.1) as sim:\n"
        "        sim.set_prices({'ETHUSDT': 2500})\n"
        "        exchange = load_pro_exchange('binanceusdm')(sim.ccxt_config())\n"
        "        try:\n"
        "            marks = await asyncio.wait_for(exchange.watch_mark_prices(['ETH/USDT:USDT']), 10)\n"
        "        finally:\n"
        "            await exchange.close()\n"
        "        return marks['ETH/USDT:USDT']['markPrice']\n"
        "mark = asyncio.run(main())\n"
        "print(json.dumps({'mark': mark, 'pro': 'ccxt.pro' in sys.modules, 'okx': 'ccxt.pro.okx' in sys.modules}))"
    )
    assert got == {"mark": 2500, "pro": False, "okx": False}


# ---------------------------------------------------------------- sqlite-utils

def test_sqlite_utils_without_numpy_then_numpy_imports_as_usual(tmp_path):
    pytest.importorskip("numpy")  # installed with matplotlib (the test and plot extras)
    db = tmp_path / "x.db"
    got = fresh(
        "import json, sys\n"
        "from alerter.lazy import import_sqlite_utils\n"
        "sqlite_utils = import_sqlite_utils()\n"
        "numpy_loaded = 'numpy' in sys.modules\n"
        f"db = sqlite_utils.Database({str(db)!r})\n"
        "db['t'].insert({'id': 1, 'ratio': 0.5}, pk='id')\n"
        "import numpy\n"
        "print(json.dumps({'numpy_loaded': numpy_loaded, 'rows': list(db['t'].rows), 'numpy': numpy.__name__,\n"
        "                  'again': import_sqlite_utils() is sqlite_utils}))"
    )
    assert got == {"numpy_loaded": False, "rows": [{"id": 1, "ratio": 0.5}], "numpy": "numpy", "again": True}


def test_sqlite_utils_after_numpy_is_the_plain_import():
    pytest.importorskip("numpy")
    got = fresh(
        "import json, numpy\n"
        "from alerter.lazy import import_sqlite_utils\n"
        "import sqlite_utils.db\n"
        "print(json.dumps(import_sqlite_utils().db.np is numpy))"
    )
    assert got is True


# ---------------------------------------------------------------- apprise's plugins

def test_the_schemes_read_from_the_plugins_source_are_apprises_own():
    """Every scheme that the source text places in a plugin is served by that plugin in apprise's
    own map (all plugins loaded); the few it cannot place load the full set instead."""
    from alerter.lazy import apprise_schemes
    from apprise.manager_plugins import NotificationManager

    manager = NotificationManager()
    read: dict[str, str] = {}
    for module, file in plugin_files():
        for scheme in declared_schemes(file.read_text(encoding="utf-8")):
            read.setdefault(scheme, module)
    known = apprise_schemes()
    placed = [s for s in known if s in read]
    assert len(placed) > 0.9 * len(known)
    for scheme in placed:
        module = manager[scheme].__module__
        assert module == read[scheme] or module.startswith(read[scheme] + "."), scheme


def test_a_channel_loads_only_its_plugin_and_delivers(webhook):
    got = fresh(
        "import asyncio, json, sys\n"
        "from alerter.config import ChannelConfig\n"
        "from alerter.notify import Notifier, check_url\n"
        f"url = 'json://{webhook.url}/hook'\n"
        "checked = check_url(url)\n"
        "notifier = Notifier([ChannelConfig(name='hook', url=url), ChannelConfig(name='tg', url='tgram://123456789:AAHtoken/42')], timeout=5)\n"
        "sent = asyncio.run(notifier.send('hook', 'title', 'body')).ok\n"
        "plugins = sorted({m.split('.')[2] for m in sys.modules if m.startswith('apprise.plugins.') and m.count('.') >= 2} - {'base'})\n"
        "suggestion = check_url('josn://host/x')\n"
        "after = len({m.split('.')[2] for m in sys.modules if m.startswith('apprise.plugins.') and m.count('.') >= 2} - {'base'})\n"
        "again = asyncio.run(notifier.send('hook', 'title 2', 'body')).ok\n"
        "print(json.dumps({'checked': checked, 'sent': sent, 'plugins': plugins, 'suggestion': suggestion, 'after': after, 'again': again}))"
    )
    assert got["checked"] is None and got["sent"] and got["again"]
    assert got["plugins"] == ["custom_json", "telegram"]
    # an unknown scheme: apprise's full set, for the suggestion
    assert got["suggestion"] == "unknown apprise scheme josn:// (did you mean json://, join://, jsons://?)"
    assert got["after"] > 100
    assert [r["body"]["title"] for r in webhook.requests] == ["title", "title 2"]


def test_a_scheme_the_source_does_not_place_loads_the_full_set():
    """kodi:// is declared in a way the text reading does not place: apprise's full set serves it."""
    got = fresh(
        "import json, sys\n"
        "from alerter.lazy import load_apprise_scheme\n"
        "ok = load_apprise_scheme('KODI'), load_apprise_scheme('json'), load_apprise_scheme('nosuchscheme')\n"
        "print(json.dumps({'ok': ok, 'plugins': len([m for m in sys.modules if m.startswith('apprise.plugins.')])}))"
    )
    assert got["ok"] == [True, True, False] and got["plugins"] > 100


# ---------------------------------------------------------------- the daemon's own path

def test_the_daemons_path_loads_one_pro_exchange_and_no_numpy():
    pytest.importorskip("numpy")
    got = fresh(
        "import json, sys\n"
        "import alerter.store\n"
        "from alerter.sources.exchange import exchange_class\n"
        "exchange_class('binanceusdm', streaming=True)\n"
        "print(json.dumps({'numpy': 'numpy' in sys.modules, 'pro': sorted(m for m in sys.modules if m.startswith('ccxt.pro.'))}))"
    )
    assert got == {"numpy": False, "pro": ["ccxt.pro.binance", "ccxt.pro.binanceusdm"]}

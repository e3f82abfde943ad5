"""Heavy libraries loaded piecemeal: only the part that a configured account or channel needs.

    cls = load_pro_exchange("binanceusdm")   # ccxt.pro's class, without ccxt.pro's other 70-odd
    sqlite_utils = import_sqlite_utils()     # sqlite-utils, without numpy and pandas
    load_apprise_scheme("tgram")             # apprise's Telegram plugin, without its other 170

- `import ccxt.pro` imports every exchange that ccxt.pro streams (its `__init__` imports them
  all, about 5 MB); `load_pro_exchange` imports the one module asked for and what it imports.
- sqlite-utils imports numpy and pandas when they are installed (numpy comes with matplotlib, the
  `plot` extra: about 11 MB), only to map their number types to column types. alerter never
  hands it a numpy or pandas value, so `import_sqlite_utils` imports it with both hidden.
- apprise imports all of its plugins (about 9 MB) the first time it looks a URL's scheme up.
  `load_apprise_scheme` finds the plugin that declares the scheme by reading the plugins' source
  text, imports that one and registers it with apprise's plugin manager; a scheme it cannot place
  that way loads the full set, as apprise would.

Each leaves the full import working: a later `import ccxt.pro` runs ccxt.pro's `__init__` and
finds the module already loaded; numpy and pandas import as usual once sqlite-utils is loaded;
`apprise_schemes()` has apprise load every plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OPTIONAL_OF_SQLITE_UTILS = ("numpy", "pandas")


# ---------------------------------------------------------------- ccxt.pro

def load_pro_exchange(exchange_id: str) -> Any:
    """ccxt.pro's exchange class for `exchange_id`, or None when ccxt.pro has no such exchange:
    the class `getattr(ccxt.pro, exchange_id)` gives, with only its own module imported."""
    loaded = sys.modules.get("ccxt.pro")
    if loaded is not None and hasattr(loaded, "exchanges"):  # ccxt.pro imported in full already
        return getattr(loaded, exchange_id, None) if exchange_id in loaded.exchanges else None
    if not exchange_id.isidentifier() or exchange_id.startswith("_"):
        return None
    import ccxt.async_support  # noqa: F401 — the parent packages, as `import ccxt.pro` loads them

    name = f"ccxt.pro.{exchange_id}"
    package = None
    if loaded is None:  # ccxt.pro as a bare package, its __init__ not run: the submodules resolve against it
        spec = importlib.util.find_spec("ccxt.pro")
        package = types.ModuleType("ccxt.pro")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["ccxt.pro"] = package
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return None
    finally:
        if package is not None and sys.modules.get("ccxt.pro") is package:
            del sys.modules["ccxt.pro"]  # a later `import ccxt.pro` runs the real __init__
    cls = getattr(module, exchange_id, None)
    return cls if isinstance(cls, type) else None


# ---------------------------------------------------------------- sqlite-utils

def import_sqlite_utils() -> types.ModuleType:
    """The sqlite_utils module, imported without numpy and pandas unless they are loaded already."""
    if "sqlite_utils" in sys.modules:
        return sys.modules["sqlite_utils"]
    hidden = [name for name in OPTIONAL_OF_SQLITE_UTILS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # `import numpy` raises ImportError, as when it is not installed
    try:
        return importlib.import_module("sqlite_utils")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


# ---------------------------------------------------------------- apprise's plugins

# a plugin's `protocol = "json"` / `secure_protocol = ("spush", "simplepush")` class attributes
_PROTOCOL = re.compile(r"""^[ \t]+(?:secure_)?protocol[ \t]*=[ \t]*(\([^)]*\)|"[^"]*"|'[^']*')""", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")

_partial = False  # True while apprise's plugin manager holds only the plugins registered here


def plugin_files() -> Iterator[tuple[str, Path]]:
    """(module, source file) of every apprise plugin, as apprise's own loader finds them: one
    module or package per plugin in apprise/plugins/, but `base` and the private ones."""
    from apprise.manager_plugins import NotificationManager

    for entry in sorted(Path(NotificationManager.module_path).iterdir()):
        name = entry.name.removesuffix(".py")
        if name.startswith("_") or name == "base":
            continue
        for file in sorted(entry.glob("*.py")) if entry.is_dir() else [entry] if entry.suffix == ".py" else []:
            yield f"{NotificationManager.module_name_prefix}.{name}", file


def declared_schemes(source: str) -> set[str]:
    """The schemes a plugin's source text declares in `protocol` and `secure_protocol`."""
    return {scheme.lower() for value in _PROTOCOL.findall(source) for scheme in _QUOTED.findall(value)}


def _module_declaring(scheme: str) -> str | None:
    quoted = (f'"{scheme}"', f"'{scheme}'")
    for module, file in plugin_files():
        source = file.read_text(encoding="utf-8", errors="replace")
        if any(q in source for q in quoted) and scheme in declared_schemes(source):
            return module
    return None


def _plugin_of(module: types.ModuleType, scheme: str, name_pattern: re.Pattern) -> Any:
    """The plugin class in `module` that serves `scheme`, picked as apprise picks it, or None."""
    for attr in dir(module):
        plugin = getattr(module, attr)
        if name_pattern.match(attr) and isinstance(plugin, type) and hasattr(plugin, "app_id") and scheme in plugin.schemas(plugin):
            return plugin
    return None


def _register(plugin: Any) -> bool:
    from apprise.manager_plugins import NotificationManager

    global _partial
    manager = NotificationManager()
    if not manager:  # loaded from an empty folder, it counts as loaded and holds no plugin yet
        with tempfile.TemporaryDirectory() as empty:
            manager.load_modules(path=empty)
        _partial = True
    return manager.add(plugin)


def _all_plugins() -> Any:
    """apprise's plugin manager (one per process) with every plugin loaded, as apprise loads them."""
    from apprise.manager_plugins import NotificationManager

    global _partial
    manager = NotificationManager()
    if not manager or _partial:
        manager.unload_modules()  # the plugins registered one by one make way for the full set
        manager.load_modules()
        _partial = False
    return manager


def load_apprise_scheme(scheme: str) -> bool:
    """Make apprise know `scheme`: import the one plugin that declares it and register it with
    apprise's plugin manager. False when no plugin serves it; apprise then has all of its plugins
    loaded, as it would have without this (it recognises some services by their https:// URLs)."""
    from apprise.manager_plugins import NotificationManager

    scheme = scheme.strip().lower()
    manager = NotificationManager()
    if manager and scheme in manager:
        return True
    module = _module_declaring(scheme)
    plugin = None if module is None else _plugin_of(importlib.import_module(module), scheme, manager.module_filter_re)
    if plugin is not None and _register(plugin):
        return True
    return scheme in _all_plugins()


def apprise_schemes() -> list[str]:
    """Every scheme apprise knows (all of its plugins loaded)."""
    return list(_all_plugins().schemas())

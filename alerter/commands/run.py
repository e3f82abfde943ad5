"""`alerter run`: the daemon, until SIGTERM/SIGINT; SIGHUP re-reads the configuration."""

from __future__ import annotations

from alerter.commands import add_config

HELP = "run the daemon: poll every account, alert, until SIGTERM/SIGINT; SIGHUP re-reads the configuration"


def add_arguments(parser) -> None:
    add_config(parser)


def run(args) -> int:
    import asyncio
    import faulthandler

    from alerter.config import find_config, load_settings
    from alerter.errors import StoreError
    from alerter.lockfile import DatabaseInUse, hold_lock
    from alerter.logs import setup_logging
    from alerter.runtime import announce_failure, build_daemon, preflight
    from alerter.secrets import of as secrets_of

    path = find_config(args.config).absolute()  # SIGHUP re-reads this file
    settings = load_settings(path)
    setup_logging(settings.daemon.log_level, secrets_of(settings))
    try:
        faulthandler.enable()  # a crash in C code (SIGSEGV, SIGABRT, …) still leaves its traceback in the log
    except (ValueError, OSError):  # stderr without a file descriptor (run in-process under a test runner)
        pass
    preflight(settings)
    try:
        hold_lock(settings.daemon.database)  # one daemon per database: the lock lasts until this process ends
        daemon = build_daemon(settings, config=path)
    except DatabaseInUse:
        raise  # the other daemon is watching: nothing to announce
    except StoreError as e:
        asyncio.run(announce_failure(settings, f"alerter cannot start: {e}"))
        raise
    asyncio.run(daemon.run())
    return daemon.exit_code

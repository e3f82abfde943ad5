"""One daemon per database: an exclusive lock on `<database>.lock`, held for the process's life.

Two daemons on one database would each decide and send every alert. `alerter run` takes the
lock before it opens the database; the kernel releases it when the process ends, however it
ends (kill -9 included), so a stale file never blocks a restart. The file holds the PID of the
holder, for the error message of the daemon that is refused. The file itself is left in place
(removing it would let a third process lock a new file while a second still holds the old one).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from alerter.errors import StoreError


class DatabaseInUse(StoreError):
    """Another process holds the database's lock (another daemon runs on it)."""


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def hold_lock(database: Path) -> int:
    """Lock `<database>.lock` (created if need be) and write this process's PID into it. Returns
    the open descriptor: keep it open (the lock lasts as long as it). Raises DatabaseInUse naming
    the database and the holder's PID, or StoreError when the file cannot be created or locked."""
    path = lock_path(Path(database))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StoreError(f"{path}: cannot create the lock file: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise DatabaseInUse(
            f"{database}: another alerter daemon is running on this database (PID {holder or 'unknown'}, "
            f"lock {path}); stop it first, or give this one its own [daemon] database"
        ) from None
    except OSError as e:
        os.close(fd)
        raise StoreError(f"{path}: cannot lock: {e.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd

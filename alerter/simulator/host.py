"""The host around the daemon, for fault tests and benchmarks: another process holding the
database's write lock, and systemd's end of the notify socket (READY=1, WATCHDOG=1, …).

    with write_lock(db):          # a second process holds BEGIN IMMEDIATE until the block ends
        ...
    notify = NotifySocket(tmp / "notify.sock")   # give the daemon NOTIFY_SOCKET=notify.path
    notify.pings()                # monotonic times of its WATCHDOG=1 messages
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextmanager
def write_lock(db: str | Path) -> Iterator[subprocess.Popen]:
    """Another process (a backup, the `sqlite3` shell) holds the database's write lock for the
    `with` block; the lock is taken when the block starts."""
    proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "locked":
            raise RuntimeError(f"could not lock {db}")
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(10)


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that timestamps every message."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True, name="notify-socket")
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            try:
                self.messages.append((time.monotonic(), self.sock.recv(256).decode()))
            except TimeoutError:
                pass

    def pings(self, since: float = 0.0) -> list[float]:
        return [t for t, m in list(self.messages) if m == "WATCHDOG=1" and t >= since]

    def max_gap(self, start: float, end: float) -> float:
        """The longest time between watchdog pings (or the window's ends) from `start` to `end`."""
        points = [start, *[t for t in self.pings() if start < t < end], end]
        return max(b - a for a, b in zip(points, points[1:]))

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()

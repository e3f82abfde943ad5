"""Reading a small text file that a user names (the configuration, a secret file, a scenario).

Only a regular file of at most `max_bytes`, in UTF-8, is read. Anything else is refused before a
byte is read: `/dev/zero` would fill memory, a FIFO would block forever, and opening some devices
has side effects, so the path is stat()ed before it is opened (and the open file is checked
again, in case the path changed in between).
"""

from __future__ import annotations

import os
import stat

MAX_BYTES = 1 << 20  # 1 MiB: some 10,000 accounts of configuration


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(mode: int, size: int, max_bytes: int) -> None:
    kind = _kind(mode)
    if kind is not None:
        raise ValueError(f"is {kind}, not a regular file")
    if size > max_bytes:
        raise ValueError(f"is too large ({size:,} bytes; at most {max_bytes:,})")


def read_text_file(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> str:
    """The file's text (a leading byte-order mark dropped). Raises OSError when the system cannot
    open or read it, ValueError with a one-line reason (not repeating the path) when it refuses."""
    info = os.stat(path)
    _refuse(info.st_mode, info.st_size, max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        _refuse(info.st_mode, info.st_size, max_bytes)
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):  # until EOF: the size may have changed since fstat
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ValueError(f"is too large (more than {max_bytes:,} bytes)")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, column {column}); save it as UTF-8") from None
    return text.removeprefix("\ufeff")

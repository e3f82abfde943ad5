"""The values of the configuration file, as text in and typed values out: durations, ratios,
secrets and secret references, times of day, time zones. Each parser raises ValueError with a
line that pydantic reports under the key's path (alerter.config)."""

from __future__ import annotations

import difflib
import os
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

from alerter.textfile import read_text_file

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"60s"``, ``"2m"``, ``"1h30m"``, ``"1d"`` or a number of seconds."""
    try:
        return _duration(value)
    except OverflowError:  # beyond timedelta's ~2.7 million years; pydantic only maps ValueError
        raise ValueError(f"too long a duration, got {value!r}") from None


def parse_positive_duration(value: Any) -> timedelta:
    """A duration that must be longer than 0 (a poll interval, a timeout, an expiry)."""
    interval = parse_duration(value)
    if interval <= timedelta(0):
        raise ValueError(f"must be longer than 0, got {value!r}")
    return interval


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '60s' or '2m', got {value!r}")
    if isinstance(value, int | float):
        if value != value:  # NaN
            raise ValueError(f"expected a duration like '60s' or '2m', got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text and _DURATION.sub("", text) == "":
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
    raise ValueError(f"expected a duration like '60s', '2m' or '6h', got {value!r}")


def parse_repeat(value: Any) -> timedelta | None:
    """A repeat interval; ``0`` or ``"never"`` turns repeats off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("never", "off")):
        return None
    interval = parse_duration(value)
    return interval if interval > timedelta(0) else None


def parse_ratio(value: Any) -> float:
    """A fraction of 1 (``0.7``) or a percentage string (``"70%"``)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"expected a fraction like 0.7 or a percentage like '70%', got {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"expected a fraction like 0.7 or a percentage like '70%', got {value!r}")
    if not 0 <= number <= 1:
        raise ValueError(f"must be between 0 and 1 (or 0% and 100%), got {value!r}")
    return number


def resolve_secret(value: Any) -> SecretStr:
    """A literal secret, or a reference: ``env:NAME``, ``file:PATH``, ``cred:NAME``; never empty."""
    secret = _secret(value)
    if not secret.get_secret_value().strip():
        raise ValueError("is empty" + (f" (from {value})" if is_reference(value) else ""))
    return secret


def _secret(value: Any) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    kind, _, ref = value.partition(":")
    if kind == "env" and ref:
        if ref not in os.environ:
            raise ValueError(f"environment variable {ref} is not set")
        return SecretStr(os.environ[ref])
    if kind in ("file", "cred") and ref:
        if kind == "cred":
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ValueError(f"credential {ref}: $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)")
            ref = os.path.join(directory, ref)
        try:
            return SecretStr(read_text_file(ref).strip())
        except OSError as e:
            raise ValueError(f"cannot read secret file {ref}: {e.strerror}") from None
        except ValueError as e:
            raise ValueError(f"secret file {ref} {e}") from None
    return SecretStr(value)


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.partition(":")[0] in ("env", "file", "cred") and ":" in value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_positive_duration)]
Repeat = Annotated[timedelta | None, BeforeValidator(parse_repeat)]
Ratio = Annotated[float, BeforeValidator(parse_ratio)]
Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]

_CLOCK_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")


def parse_clock_time(value: Any) -> str:
    """A time of day, "08:00" or "08:00:30" (24-hour clock), returned as written."""
    if not isinstance(value, str) or not _CLOCK_TIME.fullmatch(value.strip()):
        raise ValueError(f"expected a time of day like '08:00' (24-hour clock, seconds optional: '08:00:30'), got {value!r}")
    return value.strip()


def clock_time(text: str) -> tuple[int, int, int]:
    """(hour, minute, second) of a time `parse_clock_time` accepted."""
    hour, minute, second = _CLOCK_TIME.fullmatch(text).groups()
    return int(hour), int(minute), int(second or 0)


def parse_timezone(value: Any) -> str:
    """An IANA time zone name ("Europe/Berlin", "UTC"), checked against the tz database."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an IANA time zone name like 'Europe/Berlin' or 'UTC', got {value!r}")
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)
        raise ValueError(f"unknown time zone {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                                         " (expected an IANA name like 'Europe/Berlin' or 'UTC')")) from None
    return name

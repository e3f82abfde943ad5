"""The configuration file: one TOML file, validated by pydantic-settings models.

Every problem is reported at once, one line each, named by its key path
(``accounts[1].thresholds.call: …``). Secrets may be literal or references —
``env:NAME``, ``file:PATH``, ``cred:NAME`` (systemd credentials) — and are held as
``SecretStr`` so they never print; the values' parsers are alerter.values. This module imports
neither ccxt nor apprise; what it knows about each exchange comes from the profiles
(alerter.sources.registry), which import only the venues the accounts name.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
import types
import typing
from dataclasses import replace
from datetime import timedelta
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StrictBool, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alerter.display import ratio as _pct
from alerter.errors import ConfigError
from alerter.models import Level, RepeatSchedule, Thresholds
from alerter.sources.profile import options_of
from alerter.sources.registry import GENERIC_NAME, PROFILES, profile_for, refusals, streaming_ids
from alerter.telegram import BOT_URL, CHANNEL as TELEGRAM_CHANNEL
from alerter.textfile import read_text_file
from alerter.values import PositiveDuration, Ratio, Repeat, Secret, is_reference, parse_clock_time, parse_timezone

SEARCH_PATHS = ("./alerter.toml", "/etc/alerter/config.toml")


LevelName = Literal["warning", "call", "critical"]


# ---------------------------------------------------------------- models

class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def default_database() -> Path:
    state = os.environ.get("STATE_DIRECTORY")
    return Path(state.split(":")[0]) / "alerter.db" if state else Path("alerter.db")


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


class DaemonConfig(Section):
    database: Path = Field(default_factory=default_database)
    poll_interval: PositiveDuration = timedelta(seconds=60)
    price_interval: Repeat = timedelta(seconds=5)  # mark-price checks between full polls; 0 = off
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    blind_after: Annotated[int, BeforeValidator(_not_bool)] = Field(3, ge=1)
    request_timeout: PositiveDuration = timedelta(seconds=10)
    history_retention: PositiveDuration = timedelta(days=30)
    alert_expiry: PositiveDuration = timedelta(hours=24)
    metrics: str | None = None  # "127.0.0.1:9464": serve Prometheus metrics there; unset = off
    streams: StrictBool = True  # websocket streams where the exchange has them (alerter.sources.stream)
    stream_timeout: PositiveDuration = timedelta(seconds=3)  # a stream silent this long is stalled (3 × Binance's 1 s)
    heartbeat_url: Secret | None = None  # requested after every cycle that polled every account

    @field_validator("database")
    @classmethod
    def _database_file(cls, value: Path) -> Path:
        if not str(value).strip() or value == Path("."):
            raise ValueError("expected the path of the SQLite file, e.g. '/var/lib/alerter/alerter.db'")
        return value

    @field_validator("metrics")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as '127.0.0.1:9464', got {value!r}")
        return value


# the defaults are the models' (alerter.models): written once, there

class ThresholdsConfig(Section):
    warning: Ratio = Thresholds.warning
    call: Ratio = Thresholds.call
    critical: Ratio = Thresholds.critical
    hysteresis: Ratio = Thresholds.hysteresis
    target: Ratio = Thresholds.target

    def value(self) -> Thresholds:
        return Thresholds(**self.model_dump())


class ThresholdOverrides(Section):
    warning: Ratio | None = None
    call: Ratio | None = None
    critical: Ratio | None = None
    hysteresis: Ratio | None = None
    target: Ratio | None = None

    def over(self, base: Thresholds) -> Thresholds:
        """`base` with the values this account sets."""
        return replace(base, **self.model_dump(exclude_none=True))


class RepeatConfig(Section):
    warning: Repeat = RepeatSchedule.warning
    call: Repeat = RepeatSchedule.call
    critical: Repeat = RepeatSchedule.critical
    blind: Repeat = RepeatSchedule.blind

    def schedule(self) -> RepeatSchedule:
        return RepeatSchedule(warning=self.warning, call=self.call, critical=self.critical, blind=self.blind)


# the account fields that say what the daemon does with its figures, not how its source is built
NOT_CONNECTION = frozenset({"name", "thresholds", "poll_interval", "between_polls"})


class AccountConfig(Section):
    name: str = Field(min_length=1)
    exchange: str
    # which of these an account needs is its profile's (Profile.credentials); account_problems says
    api_key: Secret | None = None
    secret: Secret | None = None
    wallet_address: Secret | None = None  # public, but it identifies the trader: masked like a secret
    password: Secret | None = None
    uid: Secret | None = None
    # an on-chain venue's (aave, spark, compound, morpho): the chain, the JSON-RPC endpoint (its URL
    # carries the provider's key), Compound's market (its base asset) and Morpho's market ids
    rpc_url: Secret | None = None
    ws_url: Secret | None = None  # the same endpoint's websocket: each new block reads the account (streams)
    chain: str | None = None
    market: str | None = None
    markets: list[str] | None = None
    thresholds: ThresholdOverrides = ThresholdOverrides()
    poll_interval: PositiveDuration | None = None
    # between full polls, every [daemon] price_interval: "reprice" the last positions at public
    # mark prices, "poll" fully (more private requests), or "off"; default: reprice where faithful
    between_polls: Literal["reprice", "poll", "off"] | None = None
    streams: StrictBool | None = None  # over [daemon] streams, for this account
    ccxt: dict[str, Any] = {}
    # "generic": read an exchange without a profile from ccxt's unified fields (approximate); it
    # then must say whether ccxt's balance `total` already includes the unrealised PnL
    profile: Literal["generic"] | None = None
    balance_includes_pnl: StrictBool | None = None

    @property
    def approximate(self) -> bool:
        return self.profile == GENERIC_NAME

    @property
    def options(self) -> dict[str, Any]:
        """Its ccxt options (the `ccxt.options` table; {} when unset or not a table)."""
        return options_of(self.ccxt)

    def connection(self) -> dict[str, Any]:
        """Every setting that builds its source: all of its fields but NOT_CONNECTION (so a field
        added later counts), secrets as SecretStr (equal when their values are). Reload builds a
        new source for an account whose connection changed."""
        return self.model_dump(exclude=set(NOT_CONNECTION))

    def credentials(self) -> dict[str, str]:
        """The credentials it sets (api_key, secret, password, uid, wallet_address), by key, as
        plain text: every SecretStr field of the account (alerter.sources.profile.Account)."""
        return {name: value.get_secret_value() for name in type(self).model_fields
                if isinstance(value := getattr(self, name), SecretStr)}


class LevelUrls(Section):
    """A channel's URL per level (`url_by_level`): the URL a message goes to when its most
    urgent alert is of that level; a level without one uses the channel's `url`
    (alerter.notify.Notifier picks it)."""

    warning: Secret | None = None
    call: Secret | None = None
    critical: Secret | None = None


class ChannelConfig(Section):
    name: str = Field(min_length=1)
    url: Secret
    url_by_level: LevelUrls = LevelUrls()
    min_level: LevelName = "warning"
    accounts: list[str] | None = Field(None, min_length=1)
    digest: Annotated[str, BeforeValidator(parse_clock_time)] | None = None  # "08:00": a daily digest at that local time
    timezone: Annotated[str, BeforeValidator(parse_timezone)] = "UTC"  # of `digest`

    @property
    def level(self) -> Level:
        return Level.parse(self.min_level)

    def urls(self) -> dict[str, SecretStr]:
        """Every URL of the channel by its key path: {"url": …, "url_by_level.critical": …}."""
        return {"url": self.url, **{f"url_by_level.{k}": v for k, v in self.url_by_level if v is not None}}


class TelegramConfig(Section):
    """[telegram]: the bot (alerter.telegram) that obeys only `chats`, and alerts them as the
    channel named "telegram", with a channel's routing keys."""

    token: Secret
    chats: list[Annotated[int, BeforeValidator(_not_bool)]] = Field(min_length=1)
    api_url: str = "https://api.telegram.org"  # a self-hosted Bot API server may stand here
    min_level: LevelName = "warning"
    accounts: list[str] | None = Field(None, min_length=1)
    digest: Annotated[str, BeforeValidator(parse_clock_time)] | None = None
    timezone: Annotated[str, BeforeValidator(parse_timezone)] = "UTC"

    @field_validator("api_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value.strip()):
            raise ValueError(f"expected an http(s) URL such as 'https://api.telegram.org', got {value!r}")
        return value.strip().rstrip("/")

    def channel(self) -> TelegramChannel:
        return TelegramChannel(name=TELEGRAM_CHANNEL, url=SecretStr(BOT_URL), min_level=self.min_level,
                               accounts=self.accounts, digest=self.digest, timezone=self.timezone, bot=self)


class TelegramChannel(ChannelConfig):
    """[telegram]'s chats as a channel: routed like any other, delivered by the bot (`bot`)."""

    bot: TelegramConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", env_prefix="ALERTER_", env_nested_delimiter="__")

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    repeat: RepeatConfig = Field(default_factory=RepeatConfig)
    accounts: list[AccountConfig] = []
    channels: list[ChannelConfig] = []  # with [telegram], its channel last (build_settings)
    telegram: TelegramConfig | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment overrides the file (which arrives as init kwargs)
        return env_settings, init_settings


# ---------------------------------------------------------------- checks beyond types

@cache
def exchange_ids() -> tuple[str, ...]:
    """ccxt's exchange ids, read from its package folder without importing ccxt (~0.5 s)."""
    spec = find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folder = Path(next(iter(spec.submodule_search_locations))) / "async_support"
    return tuple(sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")))


def threshold_problems(t: Thresholds, where: str) -> list[str]:
    problems = []
    if not t.warning < t.call:
        problems.append(f"{where}.call: {_pct(t.call)} must be above warning ({_pct(t.warning)})")
    if not t.call < t.critical:
        problems.append(f"{where}.critical: {_pct(t.critical)} must be above call ({_pct(t.call)})")
    if not t.critical < 1:
        problems.append(f"{where}.critical: {_pct(t.critical)} must be below 100 % (liquidation)")
    if not 0 < t.target < t.warning:
        problems.append(f"{where}.target: {_pct(t.target)} must be above 0 % and below warning ({_pct(t.warning)})")
    if not t.hysteresis < t.warning:
        problems.append(f"{where}.hysteresis: {_pct(t.hysteresis)} must be below warning ({_pct(t.warning)})")
    return problems


CREDENTIALS = {"password": "the API key's passphrase", "wallet_address": "the account's wallet address (0x…; no API key)",
               "rpc_url": "the chain's JSON-RPC endpoint, a secret: env:NAME reads it from the environment"}
VENUE_SETTINGS = ("chain", "ws_url", "market", "markets")  # set only where the account's profile reads them (Profile.settings)


def account_problems(account: AccountConfig, where: str, known: tuple[str, ...]) -> list[str]:
    """What the profiles say against an account: no profile (or the wrong one) for its exchange
    and ccxt options, the generic profile without its balance convention, missing credentials,
    re-pricing where it is not faithful."""
    problems = [f"{where}.{key}: {text}" for key, text in refusals(account.exchange, account.options, generic=account.approximate, known_ids=known)]
    if account.approximate and account.balance_includes_pnl is None:
        problems.append(f'{where}.balance_includes_pnl: required with profile = "generic": true if ccxt\'s balance total for '
                        f"{account.exchange} already includes the unrealised PnL (a margin balance), false if it is the wallet balance without it")
    if not account.approximate and account.balance_includes_pnl is not None:
        problems.append(f'{where}.balance_includes_pnl: only with profile = "generic" (a profile reads the exchange\'s own figures)')
    if problems:
        return problems
    profile = profile_for(account)
    for key in profile.credentials:
        if getattr(account, key, None) is None:
            needed = CREDENTIALS.get(key, f"the API key's {key}")
            problems.append(f"{where}.{key}: {profile.name} needs it ({needed})")
    for key in ("api_key", "secret", "wallet_address", "rpc_url"):
        if getattr(account, key, None) is not None and key not in profile.credentials:
            problems.append(f"{where}.{key}: not used by {account.exchange} ({profile.name} reads the account with {', '.join(profile.credentials)}): remove it")
    for key in VENUE_SETTINGS:
        if getattr(account, key) is not None and key not in profile.settings:
            problems.append(f"{where}.{key}: not used by {account.exchange} ({profile.name}): remove it")
    if profile.check_credentials is not None:
        credentials = {key: value for key, value in account.credentials().items() if key in profile.credentials or key in profile.settings}
        problems += [f"{where}.{key}: {text}" for key, text in profile.check_credentials(credentials)]
    if profile.check_settings is not None:
        problems += [f"{where}.{key}: {text}" for key, text in profile.check_settings({key: getattr(account, key) for key in profile.settings})]
    if account.streams and profile.stream is None:
        problems.append(f"{where}.streams: alerter does not stream {account.exchange} (streams: {', '.join(streaming_ids())}); "
                        "remove the key or set it to false")
    elif account.streams and not profile.stream.available(account):
        problems.append(f"{where}.streams: {profile.name} streams new blocks over the endpoint's websocket: set ws_url, "
                        "or remove the key to poll every poll_interval")
    if account.between_polls == "reprice" and not profile.reprice:
        faithful = ", ".join(sorted(i for i, p in PROFILES.items() if p.reprice))
        problems.append(
            f"{where}.between_polls: cannot re-price {account.exchange} positions faithfully from mark prices "
            f"(supported: {faithful}); use \"poll\" to poll fully every price_interval, or \"off\""
        )
    return problems


def semantic_problems(settings: Settings) -> list[str]:
    defaults = settings.thresholds.value()
    problems = threshold_problems(defaults, "thresholds")
    known = exchange_ids()
    names: set[str] = set()
    for i, account in enumerate(settings.accounts):
        where = f"accounts[{i}]"
        if account.name in names:
            problems.append(f"{where}.name: duplicate account name {account.name!r}")
        names.add(account.name)
        problems += account_problems(account, where, known)
        if account.thresholds.model_dump(exclude_none=True):
            problems += [p for p in threshold_problems(account.thresholds.over(defaults), f"{where}.thresholds") if p not in problems]
    channel_names: set[str] = set()
    for i, channel in enumerate(settings.channels):
        where = f"channels[{i}]"
        if channel.name in channel_names:
            problems.append(f"{where}.name: duplicate channel name {channel.name!r}")
        channel_names.add(channel.name)
        for key, url in channel.urls().items():
            if "://" not in url.get_secret_value():
                problems.append(f"{where}.{key}: not an apprise URL (expected scheme://…, e.g. json://host/path or tgram://token/chat)")
        for name in channel.accounts or []:
            if name not in names:
                problems.append(f"{where}.accounts: no account named {name!r}")
    if settings.telegram is not None:
        if TELEGRAM_CHANNEL in channel_names:
            problems.append(f"channels: the name {TELEGRAM_CHANNEL!r} is [telegram]'s channel: rename the [[channels]] entry")
        problems += [f"telegram.accounts: no account named {n!r}" for n in settings.telegram.accounts or [] if n not in names]
    return problems


# ---------------------------------------------------------------- error formatting

def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional[...], list[...] or Annotated[...], if any."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    return annotation


def _fields_at(loc: tuple) -> list[str]:
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _unwrap(field.annotation)
    return list(getattr(model, "model_fields", {}))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_error(err: dict) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_path(loc)}: unknown key{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err['input']!r}"
    elif err["type"] in ("model_type", "list_type", "dict_type") or err["type"].endswith("_type") or err["type"].endswith("_parsing"):
        msg = f"{msg.rstrip('.')} (got {type(err['input']).__name__})"
    return f"{_path(loc)}: {msg}"


# ---------------------------------------------------------------- loading

def find_config(path: str | os.PathLike | None) -> Path:
    if path is not None:
        if not str(path).strip():
            raise ConfigError("--config: empty path")
        return Path(path)
    if os.environ.get("ALERTER_CONFIG"):
        return Path(os.environ["ALERTER_CONFIG"])
    for candidate in SEARCH_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(f"no configuration file: pass --config PATH, set $ALERTER_CONFIG, or create {' or '.join(SEARCH_PATHS)}")


def read_toml(path: Path) -> dict:
    """The parsed file: a regular file of at most 1 MiB, UTF-8, TOML; else one ConfigError line."""
    try:
        text = read_text_file(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # thousands of nested arrays or inline tables
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


def build_settings(data: dict) -> Settings:
    """Validate a parsed config dict; raises ConfigError listing every problem."""
    try:
        settings = Settings(**data)
    except ValidationError as e:
        raise ConfigError([format_error(err) for err in e.errors()]) from None
    problems = semantic_problems(settings)
    if problems:
        raise ConfigError(problems)
    if settings.telegram is not None:  # its chats are one more channel, routed like any other
        settings.channels.append(settings.telegram.channel())
    return settings


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    return build_settings(read_toml(find_config(path)))


def secret_keys(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys of a model that hold a secret (a SecretStr, optional or not)."""
    def secret(annotation: Any) -> bool:
        if typing.get_origin(annotation) in (Annotated, typing.Union, types.UnionType):
            return any(secret(arg) for arg in typing.get_args(annotation))
        return annotation is SecretStr

    return tuple(name for name, field in model.model_fields.items() if secret(field.annotation))


def literal_secret_paths(data: dict) -> list[str]:
    """Key paths in a raw config dict that hold a literal secret rather than a reference."""
    found = []
    for section, keys in (("accounts", secret_keys(AccountConfig)), ("channels", secret_keys(ChannelConfig))):
        for i, entry in enumerate(data.get(section) or []):
            if isinstance(entry, dict):
                found += [f"{section}[{i}].{k}" for k in keys if isinstance(entry.get(k), str) and not is_reference(entry[k])]
    token = data["telegram"].get("token") if isinstance(data.get("telegram"), dict) else None
    if isinstance(token, str) and not is_reference(token):
        found.append("telegram.token")
    for i, entry in enumerate(data.get("channels") or []):
        by_level = entry.get("url_by_level") if isinstance(entry, dict) else None
        if isinstance(by_level, dict):
            found += [f"channels[{i}].url_by_level.{k}" for k, v in by_level.items() if isinstance(v, str) and not is_reference(v)]
    return found


def permission_warning(path: Path, data: dict) -> str | None:
    """A warning when a file holding literal secrets can be read by group or others."""
    literal = literal_secret_paths(data)
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if literal and mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"{path} holds literal secrets ({', '.join(literal[:3])}{', …' if len(literal) > 3 else ''}) "
            f"and is readable by group or others (mode {stat.S_IMODE(mode):o}): chmod 600 it, or use env:/file:/cred: references"
        )
    return None

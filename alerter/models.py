"""Plain data that crosses module lines: snapshots in, health, state and alerts out.

Every type here is a frozen dataclass of floats, strings and UTC datetimes, so the pure
stages (health, policy) can be tested without I/O and state can round-trip through JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

ACCOUNT_SCOPE = "account"


def isolated_scope(symbol: str, side: str) -> str:
    """The scope of an isolated position: "isolated:BTC/USDT:USDT:long"."""
    return f"isolated:{symbol}:{side}"


def cross_scope(currency: str) -> str:
    """The scope of one margin coin's cross pool, where an exchange keeps coins apart: "cross:BTC"."""
    return f"cross:{currency}"


@dataclass(frozen=True)
class OwnFigure:
    """The exchange's own risk figure, as its app shows it, and the exchange's own notice levels.

    alerter's ratio is normalised (maintenance ÷ equity, 1.0 = liquidation); the exchange's figure
    is that ratio scaled so it reads `trigger` at liquidation: `trigger` × ratio, or, for a figure
    that falls as the risk rises (`inverse`: a margin level, a uniMMR), `trigger` ÷ ratio.
    `notices` are the exchange's own notice levels in its own units, e.g.
    (("Binance's margin-call notice", 1.3),)."""

    name: str  # "margin level", "uniMMR"
    trigger: float  # the figure's value at liquidation: 1.1 (margin level), 1.05 (uniMMR), 1.0
    inverse: bool = False
    percent: bool = False  # "uniMMR 138 %" rather than "margin level 1.24"
    notices: tuple[tuple[str, float], ...] = ()
    cross_only: bool = False  # the exchange states it for the cross account only (not for isolated positions)

    def value(self, ratio: float) -> float:
        """The exchange's figure at this normalised ratio (an inverse figure is ∞ at ratio 0)."""
        if self.inverse:
            return math.inf if ratio <= 0 else (0.0 if math.isinf(ratio) else self.trigger / ratio)
        return self.trigger * ratio

    def ratio(self, value: float) -> float:
        """The normalised ratio at which the exchange's figure reads `value`."""
        if self.inverse:
            return math.inf if value <= 0 else self.trigger / value
        return value / self.trigger

    def text(self, ratio: float) -> str:
        """"margin level 1.24", "uniMMR 138 %"; "margin level ∞" with nothing borrowed."""
        value = self.value(ratio)
        if math.isinf(value):
            shown = "∞"
        elif self.percent:
            shown = f"{value * 100:,.0f} %" if value >= 0.1 else f"{value * 100:.2g} %"
        else:
            shown = f"{value:,.2f}" if value >= 1 else f"{value:.3g}"
        return f"{self.name} {shown}"

    def threshold_text(self, ratio: float) -> str:
        """The figure at a level's threshold: its `text` (a figure with a note on this snapshot says it beside the current figure only)."""
        return self.text(ratio)

    def way_back(self, deposit: float, repay: float | None) -> str:
        """The way back in the position's own assets (alerter.sources.levers); "": the alert says it in its currency."""
        return ""

    def distances(self, positions, currency: str) -> tuple[str, ...]:
        """The distance to liquidation per asset, in the venue's words; (): the alert lists its top positions."""
        return ()

    def notice_ratios(self) -> tuple[tuple[str, float], ...]:
        """The notices as normalised ratios, in the order they come as the risk rises."""
        return tuple(sorted(((label, self.ratio(value)) for label, value in self.notices), key=lambda n: n[1]))


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CALL = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        return cls[text.strip().upper()]


class AlertKind(StrEnum):
    RAISED = "raised"  # a level was reached (escalation, possibly skipping levels)
    REPEAT = "repeat"  # a level still holds and its repeat interval has passed
    RESOLVED = "resolved"  # back to ok (or the isolated position was closed)
    BLIND = "blind"  # data could not be fetched: the scope is not known to be safe
    RESTORED = "restored"  # data flows again after a blind alert
    ACKNOWLEDGED = "acknowledged"  # someone is on it: the level's repeats are held back (`Ack`)
    UNACKNOWLEDGED = "unacknowledged"  # the acknowledgement was removed (`alerter unack`): the repeats resume
    NOTICE = "notice"  # the exchange's own margin-call event, quoted (reason), at `level`


NOTICE_SCOPE = "exchange"  # the scope of an exchange's notice: never folded into the health alerts


@dataclass(frozen=True)
class Position:
    """One open position, its figures in its margin currency (`currency`; None = the account's).

    Linear contracts: `contracts` is the base-asset quantity (> 0) and `notional` = contracts × mark.
    Inverse (coin-margined) contracts, `inverse` True: `contracts` is the face value in the quote
    currency (e.g. 100 USD), `notional` = contracts ÷ mark in the coin, and every margin figure is
    in the coin (BTC). The uniform-move model of health.py does not apply to them: their
    liquidation distance is the exchange's own liquidation price."""

    symbol: str
    side: str  # "long" | "short"
    contracts: float
    entry_price: float
    mark_price: float
    notional: float  # contracts × mark, > 0
    unrealized_pnl: float
    maintenance_margin: float
    margin_mode: str = "cross"  # "cross" | "isolated"
    collateral: float | None = None  # isolated: the position's margin incl. unrealised PnL
    liquidation_price: float | None = None
    initial_margin: float | None = None
    maintenance_rate: float | None = None  # marginal rate of the current bracket, if known
    inverse: bool = False  # coin-margined: figures in the coin, contracts = face value in the quote
    currency: str | None = None  # the currency of this position's figures; None = the account's

    @property
    def sign(self) -> int:
        return 1 if self.side == "long" else -1

    @property
    def isolated(self) -> bool:
        return self.margin_mode == "isolated"

    @property
    def scope(self) -> str:
        return isolated_scope(self.symbol, self.side)


@dataclass(frozen=True)
class Pool:
    """A cross-margin scope other than the account's: one margin coin's cross positions where an
    exchange keeps coins apart (Binance COIN-M, Deribit), or one isolated-margin pair of a lender
    ("pair:BTCUSDT"). Evaluated like the account scope, in its own currency."""

    scope: str
    equity: float
    maintenance_margin: float
    currency: str
    wallet_balance: float = 0.0
    symbols: tuple[str, ...] = ()  # the cross positions it holds: its top positions and liquidation distance
    # where a pool's liquidation level differs from the account's (a lender's isolated pair in a
    # leverage tier of its own): its own trigger and figure; None = the snapshot's
    lender_trigger: float | None = None
    own_figure: OwnFigure | None = None
    repay_from_assets: bool = True  # a lender's debt repaid out of the assets (see AccountSnapshot)


@dataclass(frozen=True)
class AccountSnapshot:
    """What one poll of one account found. `equity` and `maintenance_margin` are the cross
    (account-level) figures, normalised so that maintenance ÷ equity = 1 means liquidation."""

    account: str
    exchange: str
    equity: float
    maintenance_margin: float
    wallet_balance: float
    positions: tuple[Position, ...] = ()
    initial_margin: float = 0.0
    currency: str = "USDT"
    fetched_at: datetime | None = None
    estimated: bool = False  # re-priced from mark prices, not confirmed by a full poll
    # isolated positions of a kind the exchange's profile cannot evaluate: (scope, reason). Each
    # such scope is blind on its own; the rest of the account is still evaluated.
    unreadable: tuple[tuple[str, str], ...] = ()
    approximate: bool = False  # ccxt's unified figures (profile = "generic"), not the exchange's own
    # when not empty, the pools are the account's cross scopes (one per margin coin, or per
    # isolated-margin pair) and no "account" scope is evaluated; equity, maintenance_margin,
    # wallet_balance and currency above are then the worst pool's, for summaries
    pools: tuple[Pool, ...] = ()
    # a lender's account (spot margin): equity = total assets, maintenance = lender_trigger × the
    # liabilities (with interest), so the ratio is lender_trigger ÷ margin level; the health then
    # also says how much of the debt to repay out of the assets
    lender_trigger: float | None = None
    own_figure: OwnFigure | None = None  # the exchange's own figure (the source fills it in from the profile)
    # how a lender's debt is repaid: out of the assets it holds (spot margin: both sides shrink), or
    # from outside (a collateralised loan, repaid in its loan coin: only the debt shrinks)
    repay_from_assets: bool = True


@dataclass(frozen=True)
class PositionRisk:
    """A position as an alert shows it: what it costs in maintenance and how far it is from
    its liquidation price (`liquidation_move`: signed fraction of the mark, None if unknown)."""

    symbol: str
    side: str
    notional: float
    maintenance_margin: float
    mark_price: float
    liquidation_price: float | None
    liquidation_move: float | None
    currency: str | None = None  # of `notional` and `maintenance_margin`; None = the alert's


@dataclass(frozen=True)
class Health:
    """Margin health of one scope: the cross account, or one isolated position."""

    account: str
    exchange: str
    scope: str
    margin_ratio: float  # maintenance ÷ equity; inf when equity ≤ 0 with exposure
    equity: float
    maintenance_margin: float
    deposit_needed: float  # brings the ratio back to the target
    liquidation_move: float | None  # signed uniform price move that takes the ratio to 100 %
    top_positions: tuple[PositionRisk, ...] = ()
    currency: str = "USDT"
    estimated: bool = False
    approximate: bool = False
    repay_needed: float | None = None  # a lender's account: the debt to repay out of the assets to reach the target
    own_figure: OwnFigure | None = None


@dataclass(frozen=True)
class Thresholds:
    warning: float = 0.50
    call: float = 0.70
    critical: float = 0.85
    hysteresis: float = 0.05
    target: float = 0.40

    def threshold(self, level: Level) -> float:
        if level == Level.OK:
            raise KeyError(level)
        return (self.warning, self.call, self.critical)[level - 1]  # hot: runs for every scope, every poll


@dataclass(frozen=True)
class RepeatSchedule:
    """How long a still-active level waits before it is announced again; None = never."""

    warning: timedelta | None = timedelta(hours=6)
    call: timedelta | None = timedelta(minutes=30)
    critical: timedelta | None = timedelta(minutes=5)
    blind: timedelta | None = timedelta(hours=1)

    def after(self, level: Level) -> timedelta | None:
        return (None, self.warning, self.call, self.critical)[level]


@dataclass(frozen=True)
class ScopeState:
    """What the policy remembers about one scope between polls."""

    account: str
    scope: str
    level: Level = Level.OK
    since_at: datetime | None = None  # when the current level was entered
    notified_at: datetime | None = None  # when the current level was last announced
    peak: Level = Level.OK  # highest level of the current episode (routes the resolved alert)
    failures: int = 0  # consecutive failed polls
    blind: bool = False  # a blind alert is out and not yet followed by restored
    blind_notified_at: datetime | None = None
    absent: int = 0  # consecutive full polls that did not list this (alerting) scope

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}  # asdict() deep-copies: slow per poll
        out["level"] = self.level.label
        out["peak"] = self.peak.label
        for key in ("since_at", "notified_at", "blind_notified_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ScopeState:
        values = dict(data)
        values["level"] = Level.parse(values["level"])
        values["peak"] = Level.parse(values["peak"])
        for key in ("since_at", "notified_at", "blind_notified_at"):
            values[key] = datetime.fromisoformat(values[key]) if values[key] else None
        values["blind"] = bool(values["blind"])
        values["absent"] = int(values.get("absent") or 0)
        return cls(**values)


@dataclass(frozen=True)
class Alert:
    """One decision to tell the user something. Carries every figure a person needs to act."""

    kind: AlertKind
    level: Level  # for resolved: the peak level of the episode it closes
    account: str
    scope: str
    created_at: datetime
    exchange: str = ""
    margin_ratio: float | None = None
    threshold: float | None = None  # the threshold of `level` that was crossed
    equity: float | None = None
    maintenance_margin: float | None = None
    deposit_needed: float | None = None
    repay_needed: float | None = None  # a lender's account: or repay this much of the debt
    target: float | None = None
    liquidation_move: float | None = None
    top_positions: tuple[PositionRisk, ...] = field(default=())
    currency: str = "USDT"
    estimated: bool = False
    approximate: bool = False  # the account's figures are ccxt's, not the exchange's own
    since_at: datetime | None = None  # since when this level (or blindness) holds
    failures: int = 0
    reason: str = ""  # blind: why; resolved: "position closed" etc.
    figure: str = ""  # the exchange's own figure at `margin_ratio`: "margin level 1.24"
    figure_threshold: str = ""  # and at `threshold`
    way_back: str = ""  # a lender's levers in its assets: "Add 2.10 WETH of collateral or repay 3,400.00 USDC of debt"
    distances: tuple[str, ...] = ()  # and its assets' distances to liquidation, in place of the top positions
    until_at: datetime | None = None  # acknowledged: when the acknowledgement runs out (None: at resolution)

    @property
    def key(self) -> str:
        """Identifies the decision, so a restart can never record it twice."""
        return f"{self.account}|{self.scope}|{self.kind}|{self.level.label}|{self.created_at.isoformat()}"

    @property
    def severity(self) -> int:
        """Rank in a grouped message, higher first: blind above critical, then by level."""
        return 4 if self.kind == AlertKind.BLIND else int(self.level)


@dataclass(frozen=True)
class Ack:
    """"I'm on it": someone acknowledged a scope at `level`. While it holds, that level's repeats
    (and a lower level's, once the scope falls back) are held back; a raise, the resolution or
    `until_at` ends it (alerter.policy decides, `ack_holds` and `settle_acks`)."""

    account: str
    scope: str
    level: Level  # the scope's level when it was acknowledged
    acked_at: datetime  # also tells this acknowledgement from a later one of the same scope
    until_at: datetime | None = None  # None: until the scope resolves
    note: str = ""

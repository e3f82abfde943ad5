"""Acknowledgements in the policy: pure, over plain data. An ack holds back repeats of its level
(and lower), and nothing else; a raise, the resolution or its time ends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alerter.models import ACCOUNT_SCOPE, Ack, AlertKind, Health, Level, RepeatSchedule, ScopeState, Thresholds
from alerter.policy import ack_holds, decide, decide_account, decide_failure, settle_acks

T = Thresholds()  # 50 / 70 / 85 %, hysteresis 5 points
R = RepeatSchedule(warning=timedelta(hours=6), call=timedelta(minutes=30), critical=timedelta(minutes=5), blind=timedelta(hours=1))
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def health(ratio: float, scope: str = ACCOUNT_SCOPE) -> Health:
    return Health(account="acct", exchange="binanceusdm", scope=scope, margin_ratio=ratio, equity=1_000.0,
                  maintenance_margin=ratio * 1_000.0, deposit_needed=0.0, liquidation_move=-0.1)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def ack(level: Level, minute: float = 0, until: float | None = None, scope: str = ACCOUNT_SCOPE) -> Ack:
    return Ack(account="acct", scope=scope, level=level, acked_at=at(minute), until_at=None if until is None else at(until))


def kinds(alerts) -> list[tuple[str, str]]:
    return [(a.kind.value, a.level.label) for a in alerts]


def test_an_ack_holds_back_the_repeat_and_the_repeat_comes_once_it_ends():
    state, _ = decide(None, health(0.75), T, R, at(0))  # CALL raised
    a = ack(Level.CALL, 1, until=61)
    state, alerts = decide(state, health(0.76), T, R, at(31), a)
    assert alerts == [] and state.notified_at == at(0)  # held back, and not counted as told
    state, alerts = decide(state, health(0.76), T, R, at(60), a)
    assert alerts == []
    state, alerts = decide(state, health(0.76), T, R, at(62), a)  # its time ran out: the overdue repeat at once
    assert kinds(alerts) == [("repeat", "call")]


def test_an_escalation_breaks_through_and_ends_the_ack():
    state, _ = decide(None, health(0.75), T, R, at(0))
    a = ack(Level.CALL, 1)
    state, alerts = decide(state, health(0.90), T, R, at(2), a)
    assert kinds(alerts) == [("raised", "critical")]
    assert settle_acks({ACCOUNT_SCOPE: a}, {ACCOUNT_SCOPE: state}, alerts, at(2)) == {ACCOUNT_SCOPE: "raised to CRITICAL"}
    # without it, the critical level repeats on its own schedule
    state, alerts = decide(state, health(0.90), T, R, at(8))
    assert kinds(alerts) == [("repeat", "critical")]


def test_falling_back_a_level_keeps_the_ack_and_the_resolution_ends_it():
    state, _ = decide(None, health(0.90), T, R, at(0))
    a = ack(Level.CRITICAL, 1)
    state, alerts = decide(state, health(0.70), T, R, at(2), a)  # quietly down to CALL
    assert alerts == [] and state.level == Level.CALL
    state, alerts = decide(state, health(0.70), T, R, at(45), a)  # a CALL repeat would be due: held back
    assert alerts == [] and settle_acks({ACCOUNT_SCOPE: a}, {ACCOUNT_SCOPE: state}, alerts, at(45)) == {}
    state, alerts = decide(state, health(0.20), T, R, at(46), a)
    assert kinds(alerts) == [("resolved", "critical")]
    assert settle_acks({ACCOUNT_SCOPE: a}, {ACCOUNT_SCOPE: state}, alerts, at(46)) == {ACCOUNT_SCOPE: "resolved"}


def test_an_ack_of_one_scope_holds_back_nothing_of_another():
    iso = "isolated:BTC/USDT:USDT:long"
    states, _ = decide_account({}, [health(0.75), health(0.75, iso)], T, R, at(0))
    states, alerts = decide_account(states, [health(0.75), health(0.75, iso)], T, R, at(31), acks={iso: ack(Level.CALL, 1, scope=iso)})
    assert [(a.scope, a.kind.value) for a in alerts] == [(ACCOUNT_SCOPE, "repeat")]


def test_blind_notices_are_never_held_back_and_end_no_ack():
    state, _ = decide(None, health(0.75), T, R, at(0))
    a = ack(Level.CALL, 1)
    state, alerts = decide_failure(state, "acct", at(2), "transient: timeout", immediate=True, blind_after=3, repeat=R)
    assert kinds(alerts) == [("blind", "call")]
    assert settle_acks({ACCOUNT_SCOPE: a}, {ACCOUNT_SCOPE: state}, alerts, at(2)) == {}
    state, alerts = decide(state, health(0.75), T, R, at(3), a)
    assert kinds(alerts) == [("restored", "call")]


def test_ack_holds_only_at_or_below_its_level_and_before_its_end():
    a = ack(Level.CALL, 0, until=60)
    assert ack_holds(a, Level.CALL, at(59)) and ack_holds(a, Level.WARNING, at(59))
    assert not ack_holds(a, Level.CRITICAL, at(1))
    assert not ack_holds(a, Level.CALL, at(60))
    assert not ack_holds(a, Level.OK, at(1)) and not ack_holds(None, Level.CALL, at(1))


# ---------------------------------------------------------------- properties

ratios = st.sampled_from([0.2, 0.48, 0.55, 0.66, 0.75, 0.84, 0.9, float("inf")])
step = st.one_of(
    st.tuples(st.just("poll"), st.integers(1, 120), ratios),
    st.tuples(st.just("fail"), st.integers(1, 120), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 5), st.one_of(st.none(), st.integers(1, 600))),
    st.tuples(st.just("unack"), st.integers(0, 5), st.none()),
)


def play(steps, *, with_acks: bool):
    """Drive one scope through polls, failed polls and (un)acknowledgements as the daemon does:
    decide with the stored ack, then drop the acks the decision settled. Returns every alert
    with the time it was decided and the ack that was in force then."""
    states: dict[str, ScopeState] = {}
    current: Ack | None = None
    minute = 0
    out = []
    for kind, gap, value in steps:
        minute += gap
        now = at(minute)
        if kind == "ack":
            state = states.get(ACCOUNT_SCOPE)
            if with_acks and state is not None and state.level > Level.OK:  # the command refuses a scope at ok
                current = Ack("acct", ACCOUNT_SCOPE, state.level, now, None if value is None else now + timedelta(minutes=value))
            continue
        if kind == "unack":
            current = None
            continue
        acks = {ACCOUNT_SCOPE: current} if current else {}
        if kind == "poll":
            states, alerts = decide_account(states, [health(value)], T, R, now, acks=acks)
        else:
            state, alerts = decide_failure(states.get(ACCOUNT_SCOPE), "acct", now, "transient: x", immediate=value, blind_after=3, repeat=R)
            states = {**states, ACCOUNT_SCOPE: state}
        out += [(now, a, current) for a in alerts]
        if kind == "poll" and current is not None and ACCOUNT_SCOPE in settle_acks(acks, states, alerts, now):
            current = None
    return out


@settings(max_examples=300)
@given(st.lists(step, max_size=60))
def test_an_ack_never_holds_back_a_raise_a_resolution_or_a_blind_notice(steps):
    """Whatever is acknowledged, when: every alert but the repeats is the same, at the same
    time, as without acknowledgements."""
    def told(out):
        return [(now, a.kind, a.level) for now, a, _ in out if a.kind != AlertKind.REPEAT]

    assert told(play(steps, with_acks=True)) == told(play(steps, with_acks=False))


@settings(max_examples=300)
@given(st.lists(step, max_size=60))
def test_no_repeat_of_an_acknowledged_level_while_the_ack_holds(steps):
    for now, alert, current in play(steps, with_acks=True):
        if alert.kind == AlertKind.REPEAT:
            assert not ack_holds(current, alert.level, now), (now, alert.level, current)


@settings(max_examples=200)
@given(st.lists(step, max_size=60))
def test_acks_only_remove_repeats(steps):
    """With acknowledgements there are never more repeats than without."""
    def repeats(out):
        return sum(a.kind == AlertKind.REPEAT for _, a, _ in out)

    assert repeats(play(steps, with_acks=True)) <= repeats(play(steps, with_acks=False))


# ---------------------------------------------------------------- in the SQLite file

def test_the_store_keeps_acks_and_a_poll_deletes_only_the_one_it_settled(tmp_path):
    from alerter.models import Alert
    from alerter.store import Store

    with Store(tmp_path / "a.db") as store:
        first = Ack("acct", ACCOUNT_SCOPE, Level.CALL, at(1), at(61), "adding margin")
        note = Alert(kind=AlertKind.ACKNOWLEDGED, level=Level.CALL, account="acct", scope=ACCOUNT_SCOPE, created_at=at(1), until_at=at(61), reason="adding margin")
        store.save_ack(first, note, ["hook", "mail"])
        assert store.acks() == [first] and store.acks("other") == []
        (entry,) = store.history()
        assert entry.alert == note and entry.deliveries == {"hook": "pending", "mail": "pending"}
        # acknowledged again meanwhile: the poll that settled the first one leaves the second
        second = Ack("acct", ACCOUNT_SCOPE, Level.CALL, at(2))
        store.save_ack(second, Alert(kind=AlertKind.ACKNOWLEDGED, level=Level.CALL, account="acct", scope=ACCOUNT_SCOPE, created_at=at(2)), [])
        store.commit_poll("acct", {}, [], [], {}, at(3), ended_acks=[first], poll_error=("transient", "timeout"))
        assert store.acks("acct") == [second]
        assert store.remove_ack("acct", ACCOUNT_SCOPE) == second and store.remove_ack("acct", ACCOUNT_SCOPE) is None
        assert store.poll_errors(at(0)) == {"acct": {"transient": 1}} and store.poll_errors(at(4)) == {}

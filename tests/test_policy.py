"""Alert policy: sequences of ratios over time and the exact alerts they produce."""

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerter.models import ACCOUNT_SCOPE, AlertKind, Health, Level, RepeatSchedule, ScopeState, Thresholds
from alerter.policy import decide, decide_account, decide_failure, decide_store_failure, level_for

T = Thresholds()  # 50 / 70 / 85 %, hysteresis 5 points, target 40 %
R = RepeatSchedule(warning=timedelta(hours=6), call=timedelta(minutes=30), critical=timedelta(minutes=5), blind=timedelta(hours=1))
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def health(ratio, scope=ACCOUNT_SCOPE, equity=1_000.0):
    return Health(
        account="acct",
        exchange="binanceusdm",
        scope=scope,
        margin_ratio=ratio,
        equity=equity,
        maintenance_margin=ratio * equity if math.isfinite(ratio) else 100.0,
        deposit_needed=max(0.0, ratio * equity / T.target - equity) if math.isfinite(ratio) else 1e9,
        liquidation_move=-0.1,
    )


def run(samples, state=None, repeat=R):
    """Feed (minute, ratio) samples through decide; return [(minute, kind, level)] and the state."""
    out = []
    for minute, ratio in samples:
        now = T0 + timedelta(minutes=minute)
        state, alerts = decide(state, health(ratio), T, repeat, now)
        out += [(minute, a.kind.value, a.level.label) for a in alerts]
    return out, state


@pytest.mark.parametrize(
    "samples, expected",
    [
        pytest.param([(0, 0.1), (1, 0.2), (2, 0.3)], [], id="steady ok"),
        pytest.param([(0, 0.1), (1, 0.55)], [(1, "raised", "warning")], id="warning"),
        pytest.param([(0, 0.1), (1, 0.55), (2, 0.72), (3, 0.9)],
                     [(1, "raised", "warning"), (2, "raised", "call"), (3, "raised", "critical")], id="escalation"),
        pytest.param([(0, 0.1), (1, 0.9)], [(1, "raised", "critical")], id="skip levels: one alert"),
        pytest.param([(0, 0.1), (1, math.inf)], [(1, "raised", "critical")], id="negative equity"),
        pytest.param([(0, 0.72), (1, 0.69), (2, 0.71), (3, 0.66), (4, 0.70), (5, 0.68)],
                     [(0, "raised", "call")], id="wobble around call: no flapping"),
        pytest.param([(0, 0.72), (1, 0.64), (2, 0.71)],
                     [(0, "raised", "call"), (2, "raised", "call")], id="below hysteresis then back"),
        pytest.param([(0, 0.9), (1, 0.2)], [(0, "raised", "critical"), (1, "resolved", "critical")], id="resolved once"),
        pytest.param([(0, 0.55), (1, 0.47), (2, 0.46), (3, 0.44), (4, 0.3)],
                     [(0, "raised", "warning"), (3, "resolved", "warning")], id="resolved below warning − hysteresis"),
        pytest.param([(0, 0.9), (1, 0.6), (2, 0.3)],
                     [(0, "raised", "critical"), (2, "resolved", "critical")], id="de-escalation is quiet, resolved names the peak"),
        pytest.param([(0, 0.9)] + [(m, 0.9) for m in range(1, 16)],
                     [(0, "raised", "critical"), (5, "repeat", "critical"), (10, "repeat", "critical"), (15, "repeat", "critical")],
                     id="critical repeats every 5 min"),
        pytest.param([(0, 0.75), (29, 0.75), (30, 0.75), (59, 0.75), (60, 0.75)],
                     [(0, "raised", "call"), (30, "repeat", "call"), (60, "repeat", "call")], id="call repeats every 30 min"),
        pytest.param([(0, 0.9), (3, 0.6), (5, 0.6), (36, 0.6)],
                     [(0, "raised", "critical")], id="warning after critical repeats on the warning schedule"),
    ],
)
def test_sequences(samples, expected):
    assert run(samples)[0] == expected


def test_repeat_never():
    alerts, _ = run([(m, 0.9) for m in range(0, 120)], repeat=RepeatSchedule(critical=None))
    assert alerts == [(0, "raised", "critical")]


def test_alert_carries_the_numbers():
    _, alerts = decide(None, health(0.78), T, R, T0)
    (a,) = alerts
    assert (a.kind, a.level, a.account, a.scope, a.exchange) == (AlertKind.RAISED, Level.CALL, "acct", "account", "binanceusdm")
    assert a.margin_ratio == 0.78 and a.threshold == 0.70 and a.target == 0.40
    assert a.equity == 1_000 and a.maintenance_margin == pytest.approx(780)
    assert a.deposit_needed == pytest.approx(780 / 0.4 - 1_000)
    assert a.liquidation_move == -0.1


def test_blind_after_three_failures_then_restored():
    state, out = None, []
    for minute in range(5):
        state, alerts = decide_failure(state, "acct", T0 + timedelta(minutes=minute), "timeout", immediate=False, blind_after=3, repeat=R)
        out += [(minute, a.kind.value) for a in alerts]
    assert out == [(2, "blind")]
    assert state.failures == 5 and state.blind
    state, alerts = decide(state, health(0.2), T, R, T0 + timedelta(minutes=6))
    assert [a.kind for a in alerts] == [AlertKind.RESTORED]
    assert state.failures == 0 and not state.blind


def test_credentials_go_blind_at_once_and_blind_repeats_hourly():
    state, alerts = decide_failure(None, "acct", T0, "invalid API key", immediate=True, blind_after=3, repeat=R)
    assert [(a.kind, a.reason) for a in alerts] == [(AlertKind.BLIND, "invalid API key")]
    kinds = []
    for minute in range(1, 121):
        state, alerts = decide_failure(state, "acct", T0 + timedelta(minutes=minute), "x", immediate=True, blind_after=3, repeat=R)
        kinds += [minute for _ in alerts]
    assert kinds == [60, 120]


def test_blind_keeps_the_level_and_restored_then_escalates():
    state, _ = decide(None, health(0.75), T, R, T0)
    for m in range(1, 4):
        state, _ = decide_failure(state, "acct", T0 + timedelta(minutes=m), "timeout", immediate=False, blind_after=3, repeat=R)
    assert state.level == Level.CALL and state.blind
    state, alerts = decide(state, health(0.9), T, R, T0 + timedelta(minutes=5))
    assert [(a.kind, a.level) for a in alerts] == [(AlertKind.RESTORED, Level.CALL), (AlertKind.RAISED, Level.CRITICAL)]


ISO = "isolated:ETH/USDT:USDT:long"


def test_closed_isolated_position_is_resolved_after_a_second_full_poll_and_forgotten():
    states, alerts = decide_account({}, [health(0.2), health(0.9, scope=ISO)], T, R, T0)
    assert [(a.scope, a.kind) for a in alerts] == [(ISO, AlertKind.RAISED)]
    states, alerts = decide_account(states, [health(0.2)], T, R, T0 + timedelta(minutes=1))
    assert alerts == []  # one poll without it may be a partial answer: level kept, silent
    assert (states[ISO].level, states[ISO].absent) == (Level.CRITICAL, 1)
    states, alerts = decide_account(states, [health(0.2)], T, R, T0 + timedelta(minutes=2))
    assert [(a.scope, a.kind, a.level, a.reason) for a in alerts] == [(ISO, AlertKind.RESOLVED, Level.CRITICAL, "position closed")]
    assert set(states) == {ACCOUNT_SCOPE}
    states, alerts = decide_account(states, [health(0.2)], T, R, T0 + timedelta(minutes=3))
    assert alerts == []


def estimate(ratio, scope=ACCOUNT_SCOPE):
    return replace(health(ratio, scope=scope), estimated=True)


# each poll: "full" / "est" without the isolated scope, or a ratio for it (a full poll listing it)
@pytest.mark.parametrize(
    "polls, expected, final",
    [
        pytest.param([0.9, "full", 0.9], [(0, "raised")], (Level.CRITICAL, 0), id="back after one missing poll: no duplicate critical"),
        pytest.param([0.9, "full", "full"], [(0, "raised"), (2, "resolved")], None, id="two full polls confirm it closed"),
        pytest.param([0.9, "full", "est", "est", "full"], [(0, "raised"), (4, "resolved")], None, id="estimates neither count nor resolve"),
        pytest.param([0.9, "est", "est"], [(0, "raised")], (Level.CRITICAL, 0), id="estimates alone never resolve"),
        pytest.param([0.9, "full", 0.9, "full"], [(0, "raised")], (Level.CRITICAL, 1), id="not consecutive: counting starts again"),
        pytest.param([0.9, "full", 0.2], [(0, "raised"), (2, "resolved")], (Level.OK, 0), id="back and recovered: resolved by its ratio"),
        pytest.param([0.3, "full"], [], None, id="an ok scope is dropped at once, silently"),
        pytest.param([0.55, "full", "full"], [(0, "raised"), (2, "resolved")], None, id="warning too"),
    ],
)
def test_vanished_scope_needs_a_second_full_poll(polls, expected, final):
    states, out = {}, []
    for i, poll in enumerate(polls):
        now = T0 + timedelta(minutes=i)
        if poll == "full":
            healths = [health(0.2)]
        elif poll == "est":
            healths = [estimate(0.2)]
        else:
            healths = [health(0.2), health(poll, scope=ISO)]
        states, alerts = decide_account(states, healths, T, R, now)
        out += [(i, a.kind.value) for a in alerts if a.scope == ISO]
    assert out == expected
    assert ((states[ISO].level, states[ISO].absent) if ISO in states else None) == final


def test_absent_counter_round_trips_through_json():
    state = ScopeState("acct", ISO, Level.CRITICAL, since_at=T0, notified_at=T0, peak=Level.CRITICAL, absent=1)
    assert ScopeState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_clock_jump_back_does_not_suppress_repeats_forever():
    state, _ = decide(None, health(0.9), T, R, T0)
    back = T0 - timedelta(days=30)
    state, alerts = decide(state, health(0.9), T, R, back)
    assert alerts == [] and state.notified_at == back
    state, alerts = decide(state, health(0.9), T, R, back + timedelta(minutes=5))
    assert [a.kind for a in alerts] == [AlertKind.REPEAT]


def test_clock_jump_forward_gives_one_repeat_not_a_burst():
    state, _ = decide(None, health(0.9), T, R, T0)
    state, alerts = decide(state, health(0.9), T, R, T0 + timedelta(days=2))
    assert [a.kind for a in alerts] == [AlertKind.REPEAT]
    state, alerts = decide(state, health(0.9), T, R, T0 + timedelta(days=2, seconds=60))
    assert alerts == []


def test_nan_is_never_ok():
    with pytest.raises(ValueError):
        level_for(float("nan"), T)


def test_restart_equivalence_state_round_trips_through_json():
    samples = [(0, 0.55), (1, 0.75), (2, 0.9), (3, 0.9), (9, 0.9), (10, 0.5), (20, 0.2)]
    straight, _ = run(samples)
    state, replayed = None, []
    for minute, ratio in samples:
        if state is not None:
            state = ScopeState.from_dict(json.loads(json.dumps(state.to_dict())))
        state, alerts = decide(state, health(ratio), T, R, T0 + timedelta(minutes=minute))
        replayed += [(minute, a.kind.value, a.level.label) for a in alerts]
    assert replayed == straight
    assert straight == [(0, "raised", "warning"), (1, "raised", "call"), (2, "raised", "critical"),
                        (9, "repeat", "critical"), (20, "resolved", "critical")]


# ---------------------------------------------------------------- properties

ratios = st.one_of(st.floats(min_value=0, max_value=1.5), st.just(math.inf))
steps = st.lists(st.tuples(st.integers(min_value=1, max_value=600), ratios), min_size=1, max_size=60)


@given(steps)
def test_never_repeats_a_level_faster_than_its_schedule(seq):
    # a repeat comes no sooner than its level's interval after the episode's last announcement
    # (after a quiet de-escalation, the lower level repeats counting from the higher one's alert)
    state, now, last = None, T0, None
    for seconds, ratio in seq:
        now += timedelta(seconds=seconds)
        state, alerts = decide(state, health(ratio), T, R, now)
        for a in alerts:
            if a.kind == AlertKind.REPEAT:
                assert last is not None and now - last >= R.after(a.level)
            if a.kind in (AlertKind.RAISED, AlertKind.REPEAT):
                last = now
        # the state level always matches what the ratio allows with hysteresis
        assert state.level >= level_for(ratio, T)


@given(st.lists(st.tuples(st.integers(min_value=1, max_value=86_400), st.floats(min_value=0, max_value=0.4999)), max_size=60))
def test_no_alert_on_a_steady_ok(seq):
    state, now = None, T0
    for seconds, ratio in seq:
        now += timedelta(seconds=seconds)
        state, alerts = decide(state, health(ratio), T, R, now)
        assert alerts == []


@given(steps)
def test_every_episode_opens_with_raised_and_closes_with_one_resolved(seq):
    state, now, kinds = None, T0, []
    for seconds, ratio in seq:
        now += timedelta(seconds=seconds)
        state, alerts = decide(state, health(ratio), T, R, now)
        kinds += [a.kind for a in alerts]
    episodes = [k for k in kinds if k in (AlertKind.RAISED, AlertKind.RESOLVED)]
    # resolved never comes first and never twice in a row
    for before, after in zip([None] + episodes, episodes):
        if after == AlertKind.RESOLVED:
            assert before == AlertKind.RAISED
    # an episode is open exactly while the level is above ok
    open_episode = bool(episodes) and episodes[-1] == AlertKind.RAISED
    assert open_episode == (state.level > Level.OK)
    # and a safe ratio closes it with one resolved, at the episode's peak, leaving a clean state
    peak = state.peak
    state, alerts = decide(state, health(0.0), T, R, now + timedelta(seconds=1))
    if open_episode:
        assert [(a.kind, a.level) for a in alerts] == [(AlertKind.RESOLVED, peak)]
    else:
        assert alerts == []
    assert (state.level, state.peak, state.notified_at) == (Level.OK, Level.OK, None)


# a poll of an account with one isolated scope: listed with a ratio, or missing from a full or
# from an estimated (re-priced) poll
polls = st.lists(st.one_of(ratios, st.sampled_from(["full", "est"])), min_size=1, max_size=40)


@given(polls)
def test_an_alerting_scope_is_never_resolved_by_a_single_poll_that_lacks_it(seq):
    states, previous_full = {}, None  # previous_full: what the last full poll said of the scope
    for i, poll in enumerate(seq):
        before = states.get(ISO)
        if poll == "full":
            healths = [health(0.2)]
        elif poll == "est":
            healths = [estimate(0.2)]
        else:
            healths = [health(0.2), health(poll, scope=ISO)]
        states, alerts = decide_account(states, healths, T, R, T0 + timedelta(minutes=i))
        vanished = [a for a in alerts if a.scope == ISO and a.kind == AlertKind.RESOLVED and a.reason == "position closed"]
        if poll in ("full", "est") and before is not None and before.level > Level.OK:
            if vanished:  # only a full poll, right after another full poll that lacked it too
                assert poll == "full" and previous_full == "missing" and ISO not in states
            else:
                assert states[ISO].level == before.level and states[ISO].since_at == before.since_at
                assert [a for a in alerts if a.scope == ISO] == []
        else:
            assert vanished == []
        if poll != "est":
            previous_full = "missing" if poll == "full" else "listed"


# ---------------------------------------------------------------- positions the profile cannot evaluate

ODD = "isolated:BTC-USDT:long"
WHY = "okx position BTC-USDT long (isolated MARGIN position): alerter cannot evaluate this kind"


def account_poll(states, poll, minute):
    """One poll of an account whose isolated position ODD is "odd" (listed, unreadable), "gone"
    (a full poll without it), "est" (an estimate re-using the last full poll) or a ratio (readable)."""
    healths, unreadable = [health(0.2)], ()
    if poll == "odd":
        unreadable = ((ODD, WHY),)
    elif poll == "est":
        healths = [estimate(0.2)]
    elif poll != "gone":
        healths.append(health(poll, scope=ODD))
    return decide_account(states, healths, T, R, T0 + timedelta(minutes=minute), unreadable)


def test_unreadable_position_is_blind_at_once_alone_and_repeats_on_the_blind_schedule():
    states, alerts = account_poll({}, "odd", 0)
    assert [(a.scope, a.kind, a.reason) for a in alerts] == [(ODD, AlertKind.BLIND, WHY)]
    assert states[ACCOUNT_SCOPE].blind is False and states[ODD].blind is True
    states, alerts = account_poll(states, "odd", 30)
    assert alerts == []
    states, alerts = account_poll(states, "odd", 60)  # R.blind = 1 h
    assert [(a.scope, a.kind) for a in alerts] == [(ODD, AlertKind.BLIND)]


def test_unreadable_position_restored_when_readable_or_confirmed_closed():
    states, _ = account_poll({}, "odd", 0)
    states, alerts = account_poll(states, 0.9, 1)
    assert [(a.kind, a.level) for a in alerts if a.scope == ODD] == [(AlertKind.RESTORED, Level.OK), (AlertKind.RAISED, Level.CRITICAL)]
    states, _ = account_poll({}, "odd", 0)
    states, alerts = account_poll(states, "gone", 1)
    assert alerts == [] and states[ODD].blind  # one full poll without it may be a partial answer
    states, alerts = account_poll(states, "est", 2)
    assert alerts == [] and states[ODD].blind  # an estimate neither counts nor restores
    states, alerts = account_poll(states, "gone", 3)
    assert [(a.scope, a.kind, a.reason) for a in alerts] == [(ODD, AlertKind.RESTORED, "position closed")]
    assert set(states) == {ACCOUNT_SCOPE}


def test_an_alerting_position_that_turns_unreadable_then_closes_gets_restored_and_resolved():
    states, _ = account_poll({}, 0.9, 0)
    states, alerts = account_poll(states, "odd", 1)
    assert [(a.kind, a.level) for a in alerts] == [(AlertKind.BLIND, Level.CRITICAL)]  # the level it had is kept
    for minute in (2, 3):
        states, alerts = account_poll(states, "gone", minute)
    assert [(a.kind, a.level, a.reason) for a in alerts] == [(AlertKind.RESTORED, Level.CRITICAL, "position closed"),
                                                             (AlertKind.RESOLVED, Level.CRITICAL, "position closed")]


@given(st.lists(st.one_of(ratios, st.sampled_from(["odd", "gone", "est"])), min_size=1, max_size=40))
def test_an_unreadable_scope_is_blind_until_readable_or_two_full_polls_lack_it(seq):
    states, last_full = {}, None
    for i, poll in enumerate(seq):
        before = states.get(ODD)
        states, alerts = account_poll(states, poll, i)
        mine = [a.kind for a in alerts if a.scope == ODD]
        assert states[ACCOUNT_SCOPE].blind is False  # the rest of the account is never blinded by it
        if poll == "odd":
            assert states[ODD].blind and AlertKind.RESOLVED not in mine and AlertKind.RESTORED not in mine
            if before is None or not before.blind:
                assert mine == [AlertKind.BLIND]  # at once, not after blind_after polls
        elif before is not None and before.blind:
            if poll not in ("gone", "est"):  # readable again
                assert mine[0] == AlertKind.RESTORED and not states[ODD].blind
            elif poll == "gone" and last_full == "gone":
                assert mine[0] == AlertKind.RESTORED and ODD not in states
            else:
                assert mine == [] and states[ODD].blind
        if poll != "est":
            last_full = poll if poll in ("odd", "gone") else "listed"


# ---------------------------------------------------------------- the database's failure notice

@pytest.mark.parametrize(("blind", "gaps_min", "sent"), [
    (timedelta(hours=1), [0, 30, 29, 1, 60], [True, False, False, True, True]),  # once per blind interval
    (timedelta(minutes=10), [0, 5, 5, 9], [True, False, True, False]),
    (None, [0, 59, 1, 30], [True, False, True, False]),  # blind repeats off: hourly still
    (timedelta(hours=1), [0, -5, 1], [True, True, False]),  # the clock went back: at once, then counted from there
])
def test_the_database_notice_repeats_on_the_blind_schedule(blind, gaps_min, sent):
    repeat, at, last, out = RepeatSchedule(blind=blind), T0, None, []
    for gap in gaps_min:
        at += timedelta(minutes=gap)
        last, notices = decide_store_failure(last, "database failing: disk I/O error", repeat, at)
        out.append(bool(notices))
        for n in notices:
            assert (n.kind, n.account, n.scope, n.created_at, n.reason) == (AlertKind.BLIND, "alerter", "database", at, "database failing: disk I/O error")
    assert out == sent


@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=30), st.sampled_from([None, 10, 60, 90]))
def test_database_notices_are_never_closer_than_the_interval_and_never_further_apart_than_it_while_failing(gaps, blind_min):
    """With a clock that only goes forward: the first failure is announced; two notices are at
    least the interval apart; and no failure goes unannounced once the interval has passed."""
    interval = timedelta(minutes=blind_min) if blind_min else timedelta(hours=1)
    repeat = RepeatSchedule(blind=timedelta(minutes=blind_min) if blind_min else None)
    at, last, sent_at = T0, None, []
    for gap in gaps:
        at += timedelta(minutes=gap)
        before = last
        last, notices = decide_store_failure(last, "x", repeat, at)
        if notices:
            sent_at.append(at)
        assert bool(notices) == (before is None or at - before >= interval)
    assert sent_at[0] == T0 + timedelta(minutes=gaps[0])
    assert all(b - a >= interval for a, b in zip(sent_at, sent_at[1:], strict=False))


NOTICE_AT = datetime(2026, 3, 1, tzinfo=UTC)


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_a_notice_is_told_again_only_after_the_repeat(seconds, every):
    from alerter.policy import notice_due

    last, now, repeat = NOTICE_AT, NOTICE_AT + timedelta(seconds=seconds), timedelta(seconds=every)
    assert notice_due(None, now, repeat)
    assert notice_due(last, now, repeat) == (seconds >= every)
    assert not notice_due(last, now, None)


def test_notice_alert_routes_like_a_call():
    from alerter.policy import notice_alert
    from alerter.sources.stream import Notice

    alert = notice_alert("main", "Binance", Notice("Binance margin call: ETHUSDT cross, maint 1.61", "k"), NOTICE_AT)
    assert alert.level == Level.CALL and alert.scope == "exchange"

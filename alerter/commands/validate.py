"""`alerter validate`: check the configuration file and print a summary, secrets masked.

It makes the start-up checks `run` makes (importing apprise and ccxt, about a second), so that
it refuses everything `run` would.
"""

from __future__ import annotations

import sys

from alerter.commands import EXIT_OK, add_config
from alerter.display import duration as _duration, own_levels, ratio as _pct

HELP = "check the configuration file and print a summary (secrets masked)"


def notice_lines(figure, thresholds) -> list[str]:
    """Where the user's thresholds fall against each of the exchange's own notices: "Binance's
    margin-call notice (margin level 1.30) is at 84.6 %: your warning at 50 % and call at 70 %
    come before it, your critical at 85 % after it"."""
    levels = (("warning", thresholds.warning), ("call", thresholds.call), ("critical", thresholds.critical))

    def named(group):
        return " and ".join(f"{name} at {_pct(level)}" for name, level in group)

    lines = []
    for label, at in figure.notice_ratios():
        before = [(n, t) for n, t in levels if t < at - 1e-9]
        same = [(n, t) for n, t in levels if abs(t - at) <= 1e-9]
        after = [(n, t) for n, t in levels if t > at + 1e-9]
        parts = []
        if before:
            parts.append(f"your {named(before)} come{'s' if len(before) == 1 else ''} before it")
        if same:
            parts.append(f"your {named(same)} at the same point")
        if after:
            parts.append(f"your {named(after)} after it" + (" (the exchange warns you first)" if not before and not same else ""))
        shown = figure.text(at).removeprefix(figure.name).strip()
        lines.append(f"{label} ({figure.name} {shown}) is at {_pct(at)}: " + ", ".join(parts))
    return lines


def figure_lines(figure, thresholds) -> list[str]:
    """The exchange's own figure, its liquidation level, the user's levels in it, and where they
    fall against each of the exchange's notices."""
    same = not figure.inverse and figure.trigger == 1.0  # the same number under the exchange's name
    return ([f"exchange's own figure: {figure.name}, liquidation at {figure.text(1.0).removeprefix(figure.name).strip()}"
             + ("" if same else f"; your {own_levels(figure, thresholds)}")] + notice_lines(figure, thresholds))


def live_levels(settings, account_plans: dict) -> dict[str, object]:
    """For the accounts whose profile states its levels with each answer (a loan's margin-call and
    liquidation LTVs: `Profile.live_levels`), one poll now: account → its snapshot, or the error
    (a line). Empty (no request) when there is no such account."""
    import asyncio

    from alerter.sources import SourceError, build_source

    accounts = [a for a in settings.accounts if account_plans[a.name].profile.live_levels]
    if not accounts:
        return {}

    async def poll_all():
        timeout = settings.daemon.request_timeout.total_seconds()
        sources = [build_source(a, timeout_s=timeout) for a in accounts]
        try:
            results = await asyncio.gather(*(s.fetch_snapshot() for s in sources), return_exceptions=True)
        finally:
            await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, SourceError):
                raise result
        return {a.name: f"{r.kind}: {r}" if isinstance(r, SourceError) else r for a, r in zip(accounts, results, strict=True)}

    return asyncio.run(poll_all())


def scope_levels(found, thresholds) -> list[str]:
    """What one poll said about the levels of each scope (`live_levels`)."""
    if isinstance(found, str):
        return [f"its levels: not read now ({found})"]
    figures = [(pool.scope, pool.own_figure) for pool in found.pools if pool.own_figure is not None]
    if not found.pools and found.own_figure is not None:
        figures = [("account", found.own_figure)]
    if not figures:
        return ["its levels: nothing borrowed now (the exchange states them with each loan)"]
    return [f"{scope}: {line}" for scope, figure in figures for line in figure_lines(figure, thresholds)]


def add_arguments(parser) -> None:
    add_config(parser)


def run(args) -> int:
    from alerter.config import build_settings, find_config, permission_warning, read_toml
    from alerter.plan import plans
    from alerter.runtime import preflight

    path = find_config(args.config)
    data = read_toml(path)
    settings = build_settings(data)
    preflight(settings)  # what `run` checks at start-up: refuse all of it here too
    if settings.telegram is not None:  # beyond `run`'s checks: ask Telegram whether it takes the bot's token
        import asyncio

        from alerter.errors import ConfigError
        from alerter.telegram.api import token_problem

        problem = asyncio.run(token_problem(settings.telegram))
        if problem:
            raise ConfigError([f"telegram.token: {problem}"])
    warning = permission_warning(path, data)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    for i, a in enumerate(settings.accounts):
        if a.approximate:
            print(f'warning: accounts[{i}] ({a.name}): profile = "generic": its figures are approximate (ccxt\'s unified fields, '
                  f"not {a.exchange}'s own margin figures); its alerts and status rows say so", file=sys.stderr)
    d, t = settings.daemon, settings.thresholds
    print(f"{path}: ok")
    print(f"  database       {d.database}")
    print(f"  poll interval  {_duration(d.poll_interval)}, blind after {d.blind_after} failed polls")
    print(f"  price checks   {'every ' + _duration(d.price_interval) if d.price_interval else 'off'} (mark-price re-pricing between full polls)")
    print(f"  thresholds     warning {_pct(t.warning)} · call {_pct(t.call)} · critical {_pct(t.critical)} "
          f"· hysteresis {_pct(t.hysteresis)} · target {_pct(t.target)}")
    r = settings.repeat
    print(f"  repeat         warning {_duration(r.warning)} · call {_duration(r.call)} · critical {_duration(r.critical)} · blind {_duration(r.blind)}")
    print(f"  accounts       {len(settings.accounts)}")
    account_plans = plans(settings)
    levels = live_levels(settings, account_plans)
    for a in settings.accounts:
        plan = account_plans[a.name]
        th = plan.thresholds
        extra = f", thresholds {_pct(th.warning)}/{_pct(th.call)}/{_pct(th.critical)}" if a.thresholds.model_dump(exclude_none=True) else ""
        print(f"    {a.name:<20} {a.exchange:<14} every {_duration(plan.poll_interval)}, key ********{extra}")
        profile = plan.profile
        source = 'APPROXIMATE: profile "generic", ccxt\'s unified fields' if plan.approximate else f"{profile.name} profile"
        print(f"    {'':<20} figures: {source}; currency {profile.currency}")
        lines = figure_lines(plan.own_figure, th) if plan.own_figure is not None else []
        if a.name in levels:
            lines += scope_levels(levels[a.name], th)
        for line in lines:
            print(f"    {'':<20} {line}")
        if plan.repricing:
            between = f"re-priced from mark prices every {_duration(d.price_interval)} (estimated until the next full poll)"
        elif plan.between_polls == "poll" and d.price_interval:
            between = f"full polls every {_duration(plan.poll_interval)} (asked for: between_polls = \"poll\")"
        elif not profile.reprice and a.between_polls is None:
            between = (f"nothing: mark-price re-pricing is not faithful for {a.exchange}; "
                       f"set between_polls = \"poll\" to poll fully every price_interval")
        else:
            between = "nothing (full polls only)"
        print(f"    {'':<20} between polls: {between}")
    print(f"  channels       {len(settings.channels)}")
    for c in settings.channels:
        scheme = c.url.get_secret_value().split("://", 1)[0]
        scope = ", ".join(c.accounts) if c.accounts else "all accounts"
        where = f"the bot, {len(c.bot.chats)} chat(s)" if getattr(c, "bot", None) is not None else f"{scheme}://********"  # [telegram]
        print(f"    {c.name:<20} {where}  {c.min_level} and above, {scope}")
        if c.digest:
            print(f"    {'':<20} daily digest at {c.digest} {c.timezone}")
        for key, url in list(c.urls().items())[1:]:  # url_by_level: the levels with their own URL
            print(f"    {'':<20} {key.removeprefix('url_by_level.')} alerts: {url.get_secret_value().split('://', 1)[0]}://********")
    if not settings.channels:
        print("warning: no [[channels]]: alerts would only be logged", file=sys.stderr)
    return EXIT_OK

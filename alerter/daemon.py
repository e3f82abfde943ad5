"""The daemon, the composition root: it builds the pipeline (alerter.pipeline), the channel
workers (alerter.delivery.Workers), the digests (alerter.digest.Digests) and the streams
(alerter.streams), schedules the polls, price checks, digests and housekeeping (APScheduler),
and owns the lifecycle: start, the watchdog, reload (SIGHUP) and the stop (SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from alerter import display, metrics, sdnotify
from alerter.config import Settings
from alerter.delivery import Workers
from alerter.digest import Digests
from alerter.errors import StoreError
from alerter.pipeline import Pipeline, price_groups, utcnow
from alerter.plan import AccountPlan, plans
from alerter.storethread import StoreThread
from alerter.streams import Streams, cancel_all

logger = logging.getLogger(__name__)


class Daemon:
    """Owns the store, the pipeline with its sources and notifier, the channel workers, the
    digests and the streams; `run()` until stopped. Each account's rules come from its plan
    (alerter.plan), made from the settings here and on reload."""

    def __init__(self, settings: Settings, *, store, notifier, sources: dict, clock: Callable[[], datetime] = utcnow):
        self.store = store  # the Store itself: used from the event loop only when the thread is idle (tests)
        self.store_thread = StoreThread(store)
        self.pipeline = Pipeline(settings, sources=sources, store=self.store_thread, notifier=notifier, clock=clock)
        self.stopping = asyncio.Event()
        self.delivery = Workers(self.pipeline, self.stopping)
        self.pipeline.on_recorded = self.delivery.wake
        self.jobs: set[asyncio.Task] = set()  # scheduled polls, price checks and digest sends in flight
        self.digests = Digests(self.pipeline, self.run_job, self.jobs)
        self.streams = Streams(self.pipeline, self.spawn)
        self.metrics_server = None
        self.parts = None  # runtime.Parts: rebuilds sources and the notifier on reload
        self.scheduler = None
        self.reloading = asyncio.Lock()
        self.reloads: set[asyncio.Task] = set()
        self.stop_reason: str | None = None
        self.exit_code = 0
        self._spawned: set[asyncio.Task] = set()

    # the running configuration lives in the pipeline; a reload swaps it there (Pipeline.configure)
    @property
    def settings(self) -> Settings:
        return self.pipeline.settings

    @property
    def plans(self) -> dict[str, AccountPlan]:
        return self.pipeline.plans

    @property
    def sources(self) -> dict:
        return self.pipeline.sources

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.pipeline.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.pipeline.clock = clock

    async def housekeeping(self) -> None:
        try:
            removed = await self.store_thread.prune_samples(self.clock() - self.settings.daemon.history_retention)
        except StoreError as e:
            logger.error("cannot prune history: %s", e)
            return
        if removed:
            logger.info("pruned %d health samples older than %s", removed, self.settings.daemon.history_retention)

    # ------------------------------------------------------------ scheduling

    def schedule(self, scheduler) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        start = datetime.now(UTC)
        for i, plan in enumerate(self.plans.values()):
            self.schedule_poll(scheduler, plan, start + timedelta(milliseconds=50 * i))
        self.schedule_prices(scheduler, start)
        self.digests.schedule(scheduler, start)
        scheduler.add_job(self.housekeeping, IntervalTrigger(hours=1), id="housekeeping", next_run_time=start + timedelta(minutes=1))

    def schedule_poll(self, scheduler, plan: AccountPlan, first_at: datetime) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        interval = plan.poll_interval
        jitter = min(5.0, interval.total_seconds() * 0.1)
        scheduler.add_job(
            self.run_job, IntervalTrigger(seconds=interval.total_seconds(), jitter=jitter),
            args=[self.pipeline.poll_account, plan.name], id=f"poll:{plan.name}", name=f"poll {plan.name}",
            next_run_time=first_at, max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval.total_seconds())),
        )

    def schedule_prices(self, scheduler, start: datetime) -> None:
        """One mark-price check per group of accounts that share an exchange (price_groups)."""
        from apscheduler.triggers.interval import IntervalTrigger

        price_interval = self.settings.daemon.price_interval
        for i, names in enumerate(price_groups(self.plans.values()).values()):
            scheduler.add_job(
                self.run_job, IntervalTrigger(seconds=price_interval.total_seconds()), args=[self.pipeline.check_prices, names],
                id=f"prices:{i}", name=f"mark prices {', '.join(names)}",
                next_run_time=start + price_interval, max_instances=1, coalesce=True,
                misfire_grace_time=max(1, int(price_interval.total_seconds())),
            )

    def spawn(self, job, *args) -> None:
        """Run a job now, outside the schedule (a stream's fallback), tracked like a scheduled one."""
        task = asyncio.get_running_loop().create_task(self.run_job(job, *args))
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def run_job(self, job, *args):
        """A scheduled coroutine. A stop cancels the jobs in flight (APScheduler's shutdown), which
        APScheduler would log as a failed job with a traceback: that is an ordinary end here.
        Nothing is left half-recorded: the store's transaction runs whole on the store's thread
        (a cancelled await does not cancel it, and the close queues behind it). Jobs in
        flight are tracked, so a stop waits for them before it closes their exchanges."""
        task = asyncio.current_task()
        self.jobs.add(task)
        try:
            return await job(*args)
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
            logger.info("%s%s cut short by the stop", job.__name__, args)
            return None
        finally:
            self.jobs.discard(task)

    # ------------------------------------------------------------ lifecycle

    def tasks(self, scheduler) -> dict[str, Callable[[], Awaitable]]:
        """The long-running tasks beside the scheduler and the streams, by name: each runs until
        the stop cancels it."""
        tasks = {"delivery": self.delivery.run, "watchdog": lambda: self.watchdog(scheduler)}
        if self.settings.telegram is not None:
            # the Telegram bot (alerter.telegram.bot): one more loop on this event loop, which never
            # holds up a poll or an alert; its token and api_url are those at start
            from alerter.telegram.bot import Bot

            tasks["telegram bot"] = Bot(self.settings.telegram, self).run
        return tasks

    async def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.handle_signals(asyncio.get_running_loop())
        await self.serve_metrics()
        scheduler = self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.schedule(scheduler)
        scheduler.start()
        self.pipeline.feeds = self.streams
        self.streams.start()
        running = [asyncio.create_task(start(), name=name) for name, start in self.tasks(scheduler).items()]
        logger.info("watching %d account(s), delivering to %d channel(s)", len(self.plans), len(self.settings.channels))
        sdnotify.notify("READY=1")
        if on_ready:
            on_ready()
        try:
            await self.stopping.wait()
        finally:
            logger.log(logging.WARNING if self.exit_code else logging.INFO, "stopping%s", f" ({self.stop_reason})" if self.stop_reason else "")
            sdnotify.notify("STOPPING=1")
            scheduler.shutdown(wait=False)
            await self.streams.close()
            self.pipeline.feeds = None
            if self.jobs:  # polls in flight end (cancelled, bounded) before their exchanges close
                await asyncio.wait(set(self.jobs), timeout=self.settings.daemon.request_timeout.total_seconds() + 1)
            await cancel_all((*running, *self.reloads, *self.delivery.tasks.values()), "delivery")
            await asyncio.gather(*(s.close() for s in self.sources.values()), return_exceptions=True)
            if self.metrics_server is not None:
                await self.metrics_server.close()
            await self.store_thread.close()

    def wake(self) -> None:
        """Wake the channel workers: something outside a poll (the Telegram bot's acknowledgement)
        put an announcement in the outbox."""
        self.delivery.wake()

    def alive(self, scheduler, now: datetime) -> bool:
        """The scheduler runs and the delivery loop came round recently."""
        return scheduler.running and (now - self.delivery.last_loop_at) < timedelta(seconds=30)

    async def watchdog(self, scheduler) -> None:
        """Ping systemd's watchdog only while the daemon's loops are alive: a hung event loop
        (or a dead delivery loop) stops the pings and systemd restarts the service."""
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            if self.alive(scheduler, self.clock()):
                sdnotify.notify("WATCHDOG=1")
            else:
                logger.error("delivery loop or scheduler stalled: not pinging the watchdog")
            await asyncio.sleep(interval)

    def stop(self) -> None:
        self.stopping.set()
        self.delivery.wake()

    # ------------------------------------------------------------ reload and signals

    def handle_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM and SIGINT stop; SIGHUP reloads the configuration; every other signal that would
        end the process silently (FATAL_SIGNALS) is logged and stops it just as cleanly, with exit
        status 128 + its number, so a supervisor sees a failure (systemd's Restart=on-failure
        restarts the service) rather than a clean exit."""
        handlers = {sig: self.on_stop_signal for sig in (*STOP_SIGNALS, *FATAL_SIGNALS)}
        handlers[signal.SIGHUP] = self.on_reload_signal
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not on this platform
                pass

    def on_stop_signal(self, sig: int) -> None:
        if self.stopping.is_set():
            return
        if sig in STOP_SIGNALS:
            self.stop_reason = signal_name(sig)
        else:
            self.exit_code = 128 + sig
            self.stop_reason = f"{signal_name(sig)}: not a signal alerter acts on; exit status {self.exit_code}"
        self.stop()

    def on_reload_signal(self, sig: int) -> None:
        if self.stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self.reload_from_file(), name="reload")
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)

    async def reload_from_file(self) -> bool:
        """Re-read the configuration file the daemon started with, check it as `run` does at start,
        and apply it. On any problem the running configuration stays (one log line per problem).
        systemd hears RELOADING=1 … READY=1 around it (sd_notify(3)), so `systemctl reload` waits."""
        import time

        from alerter.errors import ConfigError

        async with self.reloading:
            sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
            where = self.parts.config if self.parts is not None else None
            try:
                logger.info("reload: re-reading %s", where or "the configuration")
                try:
                    if where is None:
                        raise ConfigError("no configuration file to re-read (this daemon was not started from one)")
                    new = await asyncio.to_thread(self.parts.load)
                except ConfigError as e:
                    for problem in e.problems:
                        logger.error("reload refused: %s", problem)
                    count = len(e.problems)
                    logger.error("reload: still running the previous configuration (%d problem%s in %s)", count, "s" if count != 1 else "", where)
                    return False
                return await self.reload(new)
            except Exception:  # a reload bug must not end the monitoring
                logger.exception("reload failed; the daemon keeps running")
                return False
            finally:
                sdnotify.notify("READY=1")

    async def reload(self, new: Settings) -> bool:
        """Apply a validated configuration while running. Kept: the store (state, history, outbox),
        the sources of accounts whose connection settings did not change, the scheduled polls of
        unchanged accounts. Closed: the sources of removed accounts and of accounts whose
        exchange, keys, ccxt options or streams (on or off) changed (rebuilt). Rebuilt: the
        notifier; channel workers start for added channels and end for removed ones (whose
        pending deliveries stay in the outbox, see note_removed_channels). Accounts added,
        changed, or with new thresholds are polled at once. Returns False when refused (the
        database cannot change without a restart)."""
        from alerter.changes import describe_changes

        old = self.settings
        if new.daemon.database != old.daemon.database:
            logger.error("reload refused: daemon.database: switching from %s to %s needs a restart", old.daemon.database, new.daemon.database)
            logger.error("reload: still running the previous configuration")
            return False
        new_plans = plans(new)
        changes = describe_changes(old, new, self.plans, new_plans)
        before, after = {a.name: a for a in old.accounts}, {a.name: a for a in new.accounts}

        def connection(settings: Settings, account, plans: dict[str, AccountPlan]) -> tuple:
            # streams: a streaming account's source is built from ccxt.pro's class (runtime.Parts.source)
            return (settings.daemon.request_timeout, plans[account.name].streams,
                    account.connection())

        fresh = {name: self.parts.source(new, account) for name, account in after.items()
                 if name not in before or connection(old, before[name], self.plans) != connection(new, account, new_plans)}
        retired = [name for name in before if name not in after or name in fresh]
        scheduler = self.scheduler
        if scheduler is not None and retired:
            # no new poll (or price check) may start with a source about to close ...
            for name in retired:
                if scheduler.get_job(f"poll:{name}") is not None:
                    scheduler.remove_job(f"poll:{name}")
            for job in scheduler.get_jobs():
                if job.id.startswith("prices:"):
                    job.remove()
            # ... and those in flight end with the parts they started with
            if self.jobs:
                timeout = 3 * old.daemon.request_timeout.total_seconds() + 15
                _, late = await asyncio.wait(set(self.jobs), timeout=timeout)
                if late:
                    logger.warning("reload: %d poll(s) still running after %g s; applying the new configuration anyway", len(late), timeout)
        if self.stopping.is_set():
            await asyncio.gather(*(s.close() for s in fresh.values()), return_exceptions=True)
            return False
        # the swap: no await until every part runs on the new settings
        sources, old_plans = self.sources, self.plans
        self.pipeline.configure(new, new_plans, {name: fresh.get(name) or sources[name] for name in after},
                                self.parts.notifier(new), rebuilt=retired)
        self.parts.log_level(new)
        if scheduler is not None:
            self.reschedule(scheduler, old_plans)
        logger.info("reload: %s", ", ".join(changes) if changes else "no changes")
        await self.note_removed_channels(old)
        if new.daemon.metrics != old.daemon.metrics:
            if self.metrics_server is not None:
                await self.metrics_server.close()
                self.metrics_server = None
            await self.serve_metrics()
        if scheduler is not None:
            await self.delivery.sync(c.name for c in old.channels)

        def streaming(settings: Settings, plans: dict[str, AccountPlan]) -> tuple:
            return (settings.daemon.stream_timeout, settings.daemon.price_interval,
                    sorted((p.name, p.market_key, p.repricing, p.poll_interval) for p in plans.values() if p.streams))

        if scheduler is not None and (retired or streaming(old, old_plans) != streaming(new, new_plans)):
            await self.streams.restart()  # accounts, keys or intervals changed: the streams afresh
        await asyncio.gather(*(sources[name].close() for name in retired), return_exceptions=True)
        return True

    def reschedule(self, scheduler, before: dict[str, AccountPlan]) -> None:
        """The poll jobs for the new plans: unchanged accounts keep their job and its timing."""
        now = datetime.now(UTC)
        for i, plan in enumerate(self.plans.values()):
            job_id, was = f"poll:{plan.name}", before.get(plan.name)
            first_at = now + timedelta(milliseconds=50 * i)
            if scheduler.get_job(job_id) is None:  # added, or its source was rebuilt
                self.schedule_poll(scheduler, plan, first_at)
            elif was.poll_interval != plan.poll_interval:
                scheduler.remove_job(job_id)
                self.schedule_poll(scheduler, plan, first_at)
            elif was.thresholds != plan.thresholds:
                scheduler.modify_job(job_id, next_run_time=first_at)  # the new thresholds apply now
        for name in before.keys() - self.plans.keys():
            if scheduler.get_job(f"poll:{name}") is not None:
                scheduler.remove_job(f"poll:{name}")
        for job in scheduler.get_jobs():
            if job.id.startswith("prices:"):
                job.remove()
        self.schedule_prices(scheduler, now)
        self.digests.schedule(scheduler, now)

    async def note_removed_channels(self, old: Settings) -> None:
        """A removed channel's pending deliveries are neither sent elsewhere nor dropped: they stay
        in the outbox, go out if a channel of that name comes back before they expire
        (alert_expiry), and expire as usual otherwise. Say so when there are some."""
        names = {c.name for c in self.settings.channels}
        for channel in old.channels:
            if channel.name in names:
                continue
            try:
                pending = len(await self.store_thread.deliveries(channel=channel.name, status="pending"))
            except StoreError as e:
                logger.error("reload: cannot count the pending alerts of %s: %s", channel.name, e)
                continue
            if pending:
                logger.warning("reload: %d alert(s) pending for the removed channel %s stay in the outbox: sent if it is "
                               "configured again within %s (alert_expiry), else they expire", pending, channel.name, display.duration(self.settings.daemon.alert_expiry))

    async def serve_metrics(self) -> None:
        address = self.settings.daemon.metrics
        if not address:
            return
        try:
            self.metrics_server = await metrics.start_metrics_server(address)
            logger.info("metrics on %s", self.metrics_server.url)
        except (OSError, ValueError) as e:
            logger.error("metrics: cannot serve on %s: %s", address, e)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:  # real-time signals have no name of their own
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Signals whose default action ends the process without a word. Python already ignores SIGPIPE
# and SIGXFSZ; the synchronous faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) cannot be handled
# on the event loop: `alerter run` enables faulthandler for those.
FATAL_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGIO", "SIGPWR", "SIGSTKFLT",
) if hasattr(signal, name)) + tuple(range(getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1) + 1))

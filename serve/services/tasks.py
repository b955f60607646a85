"""Background work as named tasks, and the in-process runner that is their default home.

Each task is a plain function of a TaskEnv (database, settings, image store), safe to run
twice or in several processes at once:

- `deliver_webhooks`: send due webhook deliveries (services.webhooks.dispatch_due: rows are
  claimed with a lease, so two runners never send one delivery at once);
- `weekly_reports`: enqueue the weekly reports that are due (a unique dedupe key per
  webhook, person and week makes a second run a no-op);
- `purge_images`: the photo retention purge and the orphan sweep (core.storage; deleting a
  deleted blob is not an error);
- `reanalyze_photos`: re-analysis of the last days' stored photos with the active model,
  when it changed (services.reanalysis: each analysis is claimed once per activation, the
  replacement is a compare-and-set). Enqueued when a model is activated, and periodic.

Where they run is `task_queue`:

- "inprocess" (default): `InProcessRunner`, a daemon thread in every service process, runs
  the schedule below and the runs sent to it (`send`);
- "redis": the service processes run nothing; `python -m serve worker` processes run these
  same functions as Dramatiq actors from a Redis queue, and enqueue the schedule
  (serve/worker.py).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from serve.core.settings import Settings
from serve.core.storage import ImageStore, purge_expired, purge_orphans
from serve.db.session import transaction
from serve.services import reanalysis
from serve.services.webhooks import dispatch_due
from serve.services.weekly_reports import enqueue_weekly_reports

if TYPE_CHECKING:
    from serve.services.reanalysis import ModelSource

log = logging.getLogger("traylens.tasks")

MAX_DELIVERY_ROUNDS = 20  # rounds of up to 50 deliveries per run; the rest on the next run
FIRST_PURGE_AFTER = 15 * 60.0  # seconds after start before the first purge of a process
FIRST_REANALYSIS_AFTER = 2 * 60.0  # ... and before its first periodic re-analysis run


@dataclass(frozen=True)
class TaskEnv:
    """What a task may use."""

    factory: sessionmaker[Session]
    settings: Settings
    store: ImageStore
    # The models a task may run (reanalysis.ModelSource); None: tasks that need one do nothing.
    models: ModelSource | None = None
    # A service process's inference queue: its model runs wait their turn with the requests'.
    slots: threading.BoundedSemaphore | None = None
    # Enqueue a run of a task (a follow-up run of a bounded one); None: nowhere to send.
    send: Callable[[str], None] | None = None
    # Set when the process is stopping: a long task ends after its current round.
    stopping: threading.Event | None = None


def deliver_webhooks(env: TaskEnv) -> int:
    """Send the due webhook deliveries; how many were tried."""
    tried = 0
    for _ in range(MAX_DELIVERY_ROUNDS):
        count = dispatch_due(env.factory, env.settings)
        tried += count
        if count == 0:
            break
    return tried


def weekly_reports(env: TaskEnv) -> int:
    """Enqueue the weekly reports that are due; how many."""
    return enqueue_weekly_reports(env.factory, env.settings)


def purge_images(env: TaskEnv) -> int:
    """Delete photos past the retention period and blobs no image row names; how many."""
    with transaction(env.factory) as session:
        expired = purge_expired(session, env.store, env.settings.image_retention_days)
    with env.factory() as session:
        orphans = purge_orphans(session, env.store)
    if expired or orphans:
        log.info("purged %d expired photo(s) and %d orphan blob(s)", expired, orphans)
    return expired + orphans


def reanalyze_photos(env: TaskEnv) -> int:
    """Re-analyse stored photos made with another model than the active one (a bounded run;
    a follow-up is sent when more remain); how many analyses were re-analysed."""
    return reanalysis.reanalyze(env.factory, env.settings, env.store, env.models,
                                slots=env.slots, send=env.send, stopping=env.stopping)


TASKS: dict[str, Callable[[TaskEnv], int]] = {
    "weekly_reports": weekly_reports,  # before deliveries: its rows go out in the same round
    "deliver_webhooks": deliver_webhooks,
    "purge_images": purge_images,
    reanalysis.TASK: reanalyze_photos,
}


@dataclass(frozen=True)
class Periodic:
    """A task run every `every` seconds, the first time `first` seconds after start."""

    name: str
    every: float
    first: float


def schedule(settings: Settings) -> list[Periodic]:
    """The periodic tasks the settings ask for (an interval of 0 turns one off)."""
    plan = []
    if settings.webhook_dispatch_seconds > 0:
        every = settings.webhook_dispatch_seconds
        plan += [Periodic("weekly_reports", every, every),
                 Periodic("deliver_webhooks", every, every)]
    if settings.image_purge_hours > 0:
        every = settings.image_purge_hours * 3600
        plan.append(Periodic("purge_images", every, min(every, FIRST_PURGE_AFTER)))
    if settings.reanalysis_interval_minutes > 0 and settings.reanalysis_lookback_days > 0:
        every = settings.reanalysis_interval_minutes * 60
        plan.append(Periodic(reanalysis.TASK, every, min(every, FIRST_REANALYSIS_AFTER)))
    return plan


def run_task(name: str, env: TaskEnv) -> int:
    """Run one task by name (a KeyError for an unknown name)."""
    return TASKS[name](env)


class PlanThread:
    """A daemon thread that works through a plan of periodic tasks (`_run`) until stopped;
    the base of InProcessRunner and the worker's Scheduler."""

    def __init__(self, plan: list[Periodic], name: str, join_timeout: float) -> None:
        self._plan = plan
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Begin (a plan with nothing in it starts no thread)."""
        if self._plan:
            self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread (at most `join_timeout` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._join_timeout)


# Tasks that may run for minutes get a thread of their own in a service process, so the
# webhook deliveries' schedule never waits behind them.
OWN_THREAD = {reanalysis.TASK: "traylens-reanalysis"}


class _Lane(PlanThread):
    """One thread of InProcessRunner: its periodic tasks when due, and the runs sent to it,
    one at a time. A task that fails is logged and runs again at its next time."""

    def __init__(self, env: TaskEnv, plan: list[Periodic], name: str,
                 clock: Callable[[], float]) -> None:
        # stop waits at most one webhook timeout and a bit
        super().__init__(plan, name, env.settings.webhook_timeout_seconds + 5)
        self.env = replace(env, stopping=self._stop)
        self._clock = clock
        self._sent: list[str] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Begin (always: runs may be sent even with nothing on the schedule)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread (a task running finishes first)."""
        self._stop.set()
        self._wake.set()
        super().stop()

    def send(self, name: str) -> None:
        """Run a task soon, once (a name already waiting is not added twice)."""
        with self._lock:
            if name not in self._sent:
                self._sent.append(name)
        self._wake.set()

    def tick(self, names: list[str]) -> None:
        """Run the named tasks once, in this order."""
        for name in names:
            try:
                run_task(name, self.env)
            except Exception:  # a DB hiccup must not stop the other tasks
                log.exception("background task %s failed; retrying at its next time", name)

    def _take_sent(self) -> list[str]:
        """The runs sent since the last look, oldest first."""
        with self._lock:
            sent, self._sent = self._sent, []
            self._wake.clear()
        return sent

    def _run(self) -> None:
        """Run each task when it is due, and what was sent, until stopped."""
        start = self._clock()
        due = {p.name: start + p.first for p in self._plan}
        while not self._stop.is_set():
            now = self._clock()
            ready = [p for p in self._plan if due[p.name] <= now]
            self.tick([p.name for p in ready] + self._take_sent())
            for p in ready:  # after a run longer than the interval: no burst of catch-ups
                following = due[p.name] + p.every
                due[p.name] = following if following > now else now + p.every
            if self._stop.is_set():
                break
            wait = min(due.values()) - self._clock() if due else None
            self._wake.wait(None if wait is None else max(wait, 0.01))


class InProcessRunner:
    """The background tasks in this process (task_queue = "inprocess"): daemon threads that
    run the schedule, and the runs sent to them (`send`: a model activation's re-analysis,
    a bounded task's follow-up). The tasks of OWN_THREAD have a thread each; the others share
    "traylens-tasks"."""

    def __init__(self, env: TaskEnv, plan: list[Periodic] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        plan = schedule(env.settings) if plan is None else plan
        env = replace(env, send=self.send)
        names = ["traylens-tasks", *OWN_THREAD.values()]
        self._lanes = {name: _Lane(env, [p for p in plan if self._lane_of(p.name) == name],
                                   name, clock) for name in names}

    @staticmethod
    def _lane_of(task: str) -> str:
        """The thread a task runs in."""
        return OWN_THREAD.get(task, "traylens-tasks")

    def start(self) -> None:
        """Start every thread."""
        for lane in self._lanes.values():
            lane.start()

    def stop(self) -> None:
        """Stop every thread; each finishes the task it is running."""
        for lane in self._lanes.values():
            lane.stop()

    def send(self, name: str) -> None:
        """Run a task soon, in its thread (KeyError for an unknown task)."""
        if name not in TASKS:
            raise KeyError(name)
        self._lanes[self._lane_of(name)].send(name)

    def tick(self, names: list[str]) -> None:
        """Run the named tasks once, here and now, in this order."""
        self._lanes["traylens-tasks"].tick(names)

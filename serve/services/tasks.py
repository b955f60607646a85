"""Background work as named tasks, and the in-process runner that is their default home.

Each task is a plain function of a TaskEnv (database, settings, image store), safe to run
twice or in several processes at once:

- `deliver_webhooks`: send due webhook deliveries (services.webhooks.dispatch_due: rows are
  claimed with a lease, so two runners never send one delivery at once);
- `weekly_reports`: enqueue the weekly reports that are due (a unique dedupe key per
  webhook, person and week makes a second run a no-op);
- `purge_images`: the photo retention purge and the orphan sweep (core.storage; deleting a
  deleted blob is not an error).

Where they run is `task_queue`:

- "inprocess" (default): `InProcessRunner`, a daemon thread in every service process, runs
  the schedule below;
- "redis": the service processes run nothing; `python -m serve worker` processes run these
  same functions as Dramatiq actors from a Redis queue, and enqueue the schedule
  (serve/worker.py).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from serve.core.settings import Settings
from serve.core.storage import ImageStore, purge_expired, purge_orphans
from serve.db.session import transaction
from serve.services.webhooks import dispatch_due
from serve.services.weekly_reports import enqueue_weekly_reports

log = logging.getLogger("traylens.tasks")

MAX_DELIVERY_ROUNDS = 20  # rounds of up to 50 deliveries per run; the rest on the next run
FIRST_PURGE_AFTER = 15 * 60.0  # seconds after start before the first purge of a process


@dataclass(frozen=True)
class TaskEnv:
    """What a task may use."""

    factory: sessionmaker[Session]
    settings: Settings
    store: ImageStore


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


TASKS: dict[str, Callable[[TaskEnv], int]] = {
    "weekly_reports": weekly_reports,  # before deliveries: its rows go out in the same round
    "deliver_webhooks": deliver_webhooks,
    "purge_images": purge_images,
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


class InProcessRunner(PlanThread):
    """A daemon thread that runs the schedule in this process. A task that fails is logged
    and runs again at its next time, never fatal."""

    def __init__(self, env: TaskEnv, plan: list[Periodic] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # stop waits at most one webhook timeout and a bit
        super().__init__(schedule(env.settings) if plan is None else plan, "traylens-tasks",
                         env.settings.webhook_timeout_seconds + 5)
        self._env = env
        self._clock = clock

    def tick(self, names: list[str] | None = None) -> None:
        """Run the named tasks (default: all of the plan) once, in the plan's order."""
        for name in names if names is not None else [p.name for p in self._plan]:
            try:
                run_task(name, self._env)
            except Exception:  # a DB hiccup must not stop the other tasks
                log.exception("background task %s failed; retrying at its next time", name)

    def _run(self) -> None:
        """Run each task when it is due, until stopped."""
        start = self._clock()
        due = {p.name: start + p.first for p in self._plan}
        while not self._stop.is_set():
            now = self._clock()
            ready = [p for p in self._plan if due[p.name] <= now]
            self.tick([p.name for p in ready])
            for p in ready:  # after a run longer than the interval: no burst of catch-ups
                following = due[p.name] + p.every
                due[p.name] = following if following > now else now + p.every
            wait = min(due.values()) - self._clock()
            self._stop.wait(max(wait, 0.01))

"""The task queue (task_queue = "redis"): serve.services.tasks as Dramatiq actors on a Redis
broker, a scheduler that enqueues the periodic ones, and the worker process that runs both
(`python -m serve worker`).

Why Dramatiq: a Redis broker built in with acknowledgements (a message a killed worker
held is requeued once that worker's heartbeat lapses), retries with back-off as plain
middleware, threads in one process, and a small API that takes an explicit broker object
(no global app or config module). Periodic runs come from `Scheduler` below, a loop that
takes a Redis lock per task and interval (SET NX PX), so any number of worker processes
enqueue each run once.
"""
from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from serve.core.settings import Settings
from serve.services.tasks import TASKS, Periodic, PlanThread, TaskEnv, run_task, schedule

log = logging.getLogger("traylens.worker")

QUEUE = "traylens"
TASK_TIME_LIMIT_MS = 30 * 60 * 1000  # a purge of a large store may take minutes
MAX_RETRIES = 3  # a failed run is retried soon; the periodic schedule retries anyway


def make_broker(settings: Settings) -> Any:
    """A Redis broker of this deployment's namespace, with the middleware the tasks use
    (no Prometheus exporter: the service's /metrics is the deployment's one)."""
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import AgeLimit, Callbacks, Retries, ShutdownNotifications, TimeLimit

    middleware = [AgeLimit(), TimeLimit(time_limit=TASK_TIME_LIMIT_MS), ShutdownNotifications(),
                  Callbacks(), Retries(max_retries=MAX_RETRIES, min_backoff=1000,
                                       max_backoff=60_000)]
    return RedisBroker(url=settings.redis_url, namespace=settings.queue_namespace,
                       middleware=middleware)


@dataclass
class Queue:
    """The broker and one actor per task of serve.services.tasks.TASKS."""

    broker: Any
    actors: dict[str, Any]

    def send(self, name: str) -> None:
        """Enqueue one run of a task."""
        self.actors[name].send()


def make_queue(broker: Any, env: Callable[[], TaskEnv]) -> Queue:
    """Declare the actors on `broker`; each runs its task with `env()` (built lazily by the
    worker process: an enqueuing process needs no database)."""
    import dramatiq

    actors = {}
    for name in TASKS:
        def run(name: str = name) -> None:
            done = run_task(name, env())  # no result backend: the count goes to the log
            log.debug("task %s: %d", name, done)
        run.__name__ = name
        actors[name] = dramatiq.actor(actor_name=f"traylens.{name}", queue_name=QUEUE,
                                      broker=broker)(run)
    return Queue(broker, actors)


class Scheduler(PlanThread):
    """Enqueue each periodic task once per interval across every scheduler sharing the Redis:
    the first to SET a key that lives for the interval enqueues, the others see it taken."""

    def __init__(self, queue: Queue, redis: Any, plan: list[Periodic], namespace: str) -> None:
        super().__init__(plan, "traylens-scheduler", 5)
        self._queue = queue
        self._redis = redis
        self._namespace = namespace
        self._me = uuid.uuid4().hex

    def due(self) -> list[str]:
        """Claim and enqueue the tasks whose interval has come round; their names."""
        sent = []
        for p in self._plan:
            key = f"{self._namespace}:schedule:{p.name}"
            if self._redis.set(key, self._me, nx=True, px=max(int(p.every * 1000), 1)):
                self._queue.send(p.name)
                sent.append(p.name)
        return sent

    def _run(self) -> None:
        """Check every second (or the shortest interval) until stopped."""
        step = min([1.0, *(p.every for p in self._plan)])
        while not self._stop.is_set():
            try:
                self.due()
            except Exception:  # Redis away for a moment: try again
                log.exception("scheduling failed; retrying")
            self._stop.wait(step)


class QueueSender:
    """What a service process holds with task_queue = "redis": enqueues runs (a model
    activation's re-analysis) for the workers; connects on the first send."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._queue: Queue | None = None

    def _env(self) -> TaskEnv:
        raise RuntimeError("a service process only enqueues; workers run the tasks")

    def send(self, name: str) -> None:
        """Enqueue one run of a task."""
        with self._lock:
            if self._queue is None:
                self._queue = make_queue(make_broker(self._settings), self._env)
        self._queue.send(name)

    def stop(self) -> None:
        """Close the broker's connections, if any were opened."""
        with self._lock:
            if self._queue is not None:
                self._queue.broker.close()
                self._queue = None


def worker_env(settings: Settings) -> tuple[Any, TaskEnv]:
    """The engine (database migrated) and task env of a worker process. Its model, for the
    re-analysis, is loaded from the active model's file when a run needs it."""
    from serve.core.storage import make_image_store
    from serve.db.migrate import upgrade_database
    from serve.db.session import make_engine, make_session_factory
    from serve.services.reanalysis import FileModels

    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    return engine, TaskEnv(make_session_factory(engine), settings, make_image_store(settings),
                           models=FileModels(settings.intra_op_threads))


def run_worker(settings: Settings, *, threads: int = 4, scheduler: bool = True,
               stop: threading.Event | None = None) -> None:
    """Serve the queue (and, unless told not to, the schedule) until SIGTERM/SIGINT or
    `stop` is set; messages being worked on are finished first."""
    import dramatiq
    import redis

    stop = stop or threading.Event()
    engine, env = worker_env(settings)
    queue = make_queue(make_broker(settings), lambda: tasks_env)
    tasks_env = replace(env, send=queue.send, stopping=stop)  # follow-ups go to the queue
    worker = dramatiq.Worker(queue.broker, queues={QUEUE}, worker_threads=threads)
    client = redis.Redis.from_url(settings.redis_url)
    sched = Scheduler(queue, client, schedule(settings) if scheduler else [],
                      settings.queue_namespace)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    worker.start()
    sched.start()
    log.info("worker: %d thread(s) on %s, queue %r, schedule %s", threads, settings.redis_url,
             QUEUE, "on" if scheduler else "off")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sched.stop()
        worker.stop(timeout=int((settings.webhook_timeout_seconds + 5) * 1000))
        queue.broker.close()
        client.close()
        engine.dispose()

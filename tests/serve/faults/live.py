"""Helpers of the fault tests: the real service in a subprocess (uvicorn on a free loopback
port, restartable on the same data dir) and a throwaway PostgreSQL of the test's own
(initdb + pg_ctl in a temp directory; never the machine's shared server)."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from benchmarks.serve_speed import free_port, prepare_database
from serve.core.settings import REPO_ROOT
from tests.serve.conftest import ADMIN_KEY

PG_BIN = Path(os.environ.get("TRAYLENS_PG_BIN", "/usr/local/bin"))
START_TIMEOUT_S = 180.0  # model + nutrient table load on a busy 2-core machine


@dataclass
class LiveServer:
    """`uvicorn serve.main:create_app` as one process (the worker itself: kill -9 hits it)."""

    database_url: str
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"service-{self.port}.log"

    def start(self) -> None:
        """Start (or restart, on the same port, database and data dir) and wait until ready."""
        env = dict(os.environ)
        env.update(TRAYLENS_DATA_DIR=str(self.data_dir), TRAYLENS_DATABASE_URL=self.database_url,
                   TRAYLENS_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY, TRAYLENS_MODEL_SYNC_SECONDS="1",
                   TRAYLENS_WEBHOOK_DISPATCH_SECONDS="1", **self.extra_env)
        command = [sys.executable, "-m", "uvicorn", "serve.main:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited at startup:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"not ready after {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no rollback, no flush; exactly a crashed worker."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), a kill if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def live_server(database_url: str, tmp: Path, **extra_env: str) -> Iterator[LiveServer]:
    """A migrated database with the admin key, the service started on it, stopped after."""
    prepare_database(database_url, ADMIN_KEY)
    server = LiveServer(database_url, tmp / "data", dict(extra_env))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _as_postgres(command: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server binaries as the postgres user then."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start an own PostgreSQL")
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class OwnPostgres:
    """A PostgreSQL server of this test alone, on a free loopback port."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "start")

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: clients are disconnected, the server goes away."""
        self._ctl("-m", "fast", "-w", "-t", "60", "stop")


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """initdb + pg_ctl start in a temp directory; stopped and removed afterwards."""
    missing = [b for b in ("initdb", "pg_ctl") if not (PG_BIN / b).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} in {PG_BIN} (set TRAYLENS_PG_BIN): cannot start "
                    "an own PostgreSQL, and the shared server must not be stopped")
    root = Path(tempfile.mkdtemp(prefix=f"traylens-pg-{uuid.uuid4().hex[:6]}-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = OwnPostgres(root, free_port())
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A",
                                     "trust", "-U", "postgres", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        pg.start()
        yield pg
    finally:
        try:
            if (root / "data" / "postmaster.pid").exists():
                pg.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def tenant(url: str, diners: int) -> tuple[str, dict[str, str], list[str]]:
    """A canteen with a kiosk key and `diners` consenting users: (its id, kiosk headers,
    user ids)."""
    with httpx.Client(base_url=url, headers=admin_headers(), timeout=30) as c:
        canteen = c.post("/v1/canteens", json={"name": f"c-{secrets.token_hex(4)}"}).json()["id"]
        key = c.post("/v1/keys", json={"name": "kiosk", "role": "kiosk",
                                       "canteen_id": canteen}).json()["key"]
        users = [c.post("/v1/users", json={"canteen_id": canteen}).json()["id"]
                 for _ in range(diners)]
    return canteen, {"Authorization": f"Bearer {key}"}, users

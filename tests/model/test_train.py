"""Training runs on real fixture photos: loss falls, checkpoints load and resume, DDP, seeds."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model.train import parse_args
from model.training.checkpoints import ensemble_from_checkpoints, model_from_checkpoint
from model.training.run import run
from tests.model.conftest import tiny_args

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("train")
    result = run(parse_args(tiny_args(fixtures_dir, out, "--epochs", "4",
                                             "--cache-features", "true", "--val-every", "4")))
    return out, result


def test_loss_falls_and_validation_runs(trained: tuple[Path, dict]) -> None:
    _, result = trained
    history = result["loss_history"]
    assert len(history) == 4
    assert history[-1] < 0.8 * history[0]
    assert 0.0 <= result["map50"] <= 1.0


def test_checkpoint_holds_everything_and_loads(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert {"model", "criterion", "optimizer", "scheduler", "epoch", "config", "meta"} <= set(ckpt)
    assert ckpt["epoch"] == 4
    from nutrition_db import label_map

    assert ckpt["meta"]["labels"] == label_map().labels
    model, _ = model_from_checkpoint(out / "checkpoint.pt")
    with torch.no_grad():
        heat, ltrb, mask, emb = model(torch.zeros(1, 3, 96, 128))
    assert heat.shape == (1, len(label_map().labels), 12, 16)
    assert ltrb.shape == (1, 4, 12, 16) and bool((ltrb > 0).all())
    assert mask.shape == (1, 1, 12, 16)
    assert emb.shape == (1, 16, 12, 16)


def test_resume_continues_from_saved_epoch(trained: tuple[Path, dict], fixtures_dir: Path) -> None:
    out, _ = trained
    result = run(parse_args(tiny_args(
        fixtures_dir, out, "--epochs", "5", "--cache-features", "true", "--val-every", "10",
        "--resume", str(out / "checkpoint.pt"))))
    assert len(result["loss_history"]) == 1  # only epoch 5 ran
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 5


def test_test_only_validates_without_training(trained: tuple[Path, dict],
                                             fixtures_dir: Path) -> None:
    out, _ = trained
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    result = run(parse_args(tiny_args(
        fixtures_dir, out, "--epochs", "5", "--cache-features", "true", "--test-only",
        "--resume", str(out / "checkpoint.pt"))))
    assert set(result) >= {"map50"}
    assert (out / "checkpoint.pt").stat().st_mtime_ns == before


def test_export_cli_can_add_the_flip_test_to_a_checkpoint(trained: tuple[Path, dict],
                                                          tmp_path: Path) -> None:
    """Training does not depend on flip_test, so an existing checkpoint can be exported with
    it; the file says so, under its own version. The export also fits the portion
    calibration and, asked to (--open-set), the open-set naming check on the run's training
    split."""
    from model import export
    from model.infer import naming
    from model.infer.runtime import TrayModel

    out, _ = trained
    model, ckpt = model_from_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"].flip_test is False and model.flip_test is False
    onnx_path = tmp_path / "flip.onnx"
    export.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(onnx_path),
                 "--flip-test", "true", "--version", "9.9.9", "--open-set"])
    rt = TrayModel(onnx_path)
    assert rt.meta.flip_test is True and rt.meta.version == "9.9.9"
    assert rt.open_set is not None and rt.open_set.quantile == naming.OPEN_SET_QUANTILE
    assert len(rt.open_set.regions) == len(rt.meta.labels) and rt.open_set.thresholds == "own"
    # A run whose config names a check (the shipped recipe's open_set: borrowed) gets it
    # without the flag; --open-set-thresholds still wins.
    ckpt["config"] = replace(ckpt["config"], open_set="borrowed")
    torch.save(ckpt, tmp_path / "borrowed.pt")
    export.main(["--checkpoint", str(tmp_path / "borrowed.pt"),
                 "--out", str(tmp_path / "borrowed.onnx"), "--no-calibrate"])
    borrowed = TrayModel(tmp_path / "borrowed.onnx").open_set
    assert borrowed is not None and borrowed.thresholds == "borrowed"
    assert borrowed.bank is not None
    # The same choice without exporting again: the thresholds flag wins and asks for a
    # check; with nothing asking, no check.
    assert export.open_set_choice(False, "own", "borrowed") == "own"
    assert export.open_set_choice(True, None, None) == "own"
    assert export.open_set_choice(False, "knn", None) == "knn"
    assert export.open_set_choice(False, None, None) is None


@pytest.mark.slow
def test_ddp_two_cpu_processes_on_gloo(fixtures_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29533", "-m", "model.train",
           *tiny_args(fixtures_dir, tmp_path, "--epochs", "1", "--val-fraction", "0")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 1


def test_composed_trays_pretrain_the_first_epochs_only(
    trained: tuple[Path, dict], fixtures_dir: Path, tmp_path: Path
) -> None:
    # The real photos' cached views are keyed by the real photos alone, so they are reused.
    shutil.copytree(trained[0] / "cache", tmp_path / "cache")
    real_views = sorted((tmp_path / "cache").glob("*-train-view*.pt"))
    run(parse_args(tiny_args(
        fixtures_dir, tmp_path, "--epochs", "3", "--cache-features", "true",
        "--compose", '{"images": 4, "per_label": 1, "epochs": 1}')))
    assert sorted((tmp_path / "cache").glob("*-train-view*.pt")) == real_views
    assert len(list((tmp_path / "cache").glob("*-composed-view*.pt"))) == 1
    assert list((tmp_path / "cache").glob("composed-*/images/*.jpg"))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["meta"]["training"]["compose"] == {"images": 4, "per_label": 1, "epochs": 1,
                                                   "supervise": "all"}
    assert ckpt["meta"]["fingerprint"] != torch.load(
        trained[0] / "checkpoint.pt", weights_only=False)["meta"]["fingerprint"]
    # One epoch over real + composed, then two over the real photos: the schedule counts
    # each phase's batches and ends exactly at the last step.
    n_real = len(torch.load(real_views[0], weights_only=True))
    batches = lambda n: n // 4 if n > 4 else 1  # noqa: E731 (batch 4, drop_last above 4)
    sched = ckpt["scheduler"]
    assert sched["total_steps"] == batches(n_real + 4) + 2 * batches(n_real)
    assert sched["last_epoch"] == sched["total_steps"]


@pytest.fixture(scope="module")
def seed_runs(trained: tuple[Path, dict], fixtures_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 2-epoch runs on the fixture's cache: train_seed -1 (the default), 0 and 5."""
    root = tmp_path_factory.mktemp("seeds")
    shutil.copytree(trained[0] / "cache", root / "cache")
    runs = {}
    for train_seed in ("-1", "0", "5"):
        runs[train_seed] = out = root / train_seed
        run(parse_args(tiny_args(
            fixtures_dir, out, "--epochs", "2", "--cache-features", "true", "--val-every", "4",
            "--cache-dir", str(root / "cache"), "--train-seed", train_seed)))
    return runs


def test_train_seed_changes_the_weights_not_the_split_or_cache(
    trained: tuple[Path, dict], seed_runs: dict[str, Path]
) -> None:
    views = sorted(p.name for p in (trained[0] / "cache").glob("*.pt"))
    cache = seed_runs["0"].parent / "cache"
    assert sorted(p.name for p in cache.glob("*.pt")) == views  # reused, none added
    weights = {}
    for train_seed, out in seed_runs.items():
        ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
        assert ckpt["meta"]["training"]["seed"] == 0  # the split the evaluator re-derives
        assert ckpt["meta"]["training"]["train_seed"] == max(0, int(train_seed))
        weights[train_seed] = ckpt["model"]
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert same(weights["-1"], weights["0"])  # -1: the split seed
    assert not same(weights["5"], weights["0"])


def test_runs_of_other_train_seeds_join_into_one_ensemble(
    seed_runs: dict[str, Path], tmp_path: Path
) -> None:
    a, b = seed_runs["0"] / "checkpoint.pt", seed_runs["5"] / "checkpoint.pt"
    model, ckpt, seeds = ensemble_from_checkpoints([a, b])
    assert (model.members, seeds, ckpt["meta"]["training"]["train_seed"]) == (2, [0, 5], 0)
    first, _ = model_from_checkpoint(a)
    second, _ = model_from_checkpoint(b)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        heat, _, _, emb = model(x)
        assert torch.allclose(heat, (first(x)[0] + second(x)[0]) / 2, atol=1e-6)
        assert torch.equal(emb, torch.cat([first(x)[3], second(x)[3]], dim=1))
    with pytest.raises(ValueError, match="given twice"):
        ensemble_from_checkpoints([a, seed_runs["-1"] / "checkpoint.pt"])
    other = torch.load(b, weights_only=False)
    other["config"]["neck_channels"] = 16
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neck_channels"):
        ensemble_from_checkpoints([a, tmp_path / "other.pt"])
    from model import export
    from model.infer.runtime import TrayModel

    export.main(["--checkpoint", str(a), str(b), "--out", str(tmp_path / "ens.onnx"),
                 "--no-calibrate"])
    meta = TrayModel(tmp_path / "ens.onnx").meta
    assert meta.embedding_dim == 32 and meta.training["ensemble_train_seeds"] == [0, 5]


def run_on_cache(trained: tuple[Path, dict], fixtures_dir: Path, out: Path,
                 *extra: str) -> dict:
    """A tiny run on cached features into `out`, reusing the `trained` run's cache."""
    shutil.copytree(trained[0] / "cache", out / "cache")
    return run(parse_args(tiny_args(fixtures_dir, out, "--cache-features", "true", *extra)))


def test_composed_trays_can_teach_the_mask_head_only(
    trained: tuple[Path, dict], fixtures_dir: Path, tmp_path: Path
) -> None:
    result = run_on_cache(trained, fixtures_dir, tmp_path, "--epochs", "2", "--val-every", "2",
                          "--compose", '{"images": 4, "per_label": 1, "supervise": "mask"}')
    assert len(result["loss_history"]) == 2 and 0.0 <= result["map50"] <= 1.0
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["meta"]["training"]["compose"]["supervise"] == "mask"


def moved_backbone_blocks(checkpoint: Path) -> tuple[set[str], set[str]]:
    """The backbone blocks whose tensors differ from ImageNet's, and the moved BN statistics."""
    from model.network import TrayNet

    weights = torch.load(checkpoint, weights_only=False)["model"]
    imagenet = TrayNet(28, 16, 32).backbone.state_dict()
    moved = [k for k, v in weights.items() if k.startswith("backbone.")
             and not torch.equal(v, imagenet[k.removeprefix("backbone.")])]
    return {k.split(".")[2] for k in moved}, {k for k in moved if "running" in k}


def test_top_blocks_train_on_cached_maps_and_the_file_uses_them(
    trained: tuple[Path, dict], fixtures_dir: Path, tmp_path: Path
) -> None:
    # train_top_blocks: only the stride-32 blocks of the backbone move (their BatchNorm
    # statistics stay ImageNet's), on cached stride-16 maps; the exported file computes its
    # stride-32 map with the trained blocks.
    from model import export
    from model.infer.runtime import TrayModel
    from model.network import TOP_BLOCKS, TrayNet

    result = run_on_cache(trained, fixtures_dir, tmp_path, "--epochs", "1", "--val-every", "1",
                          "--train-top-blocks", "true", "--backbone-descriptor", "true")
    assert 0.0 <= result["map50"] <= 1.0
    assert moved_backbone_blocks(tmp_path / "checkpoint.pt") == (
        {str(b) for b in range(TOP_BLOCKS, 7)}, set())
    export.main(["--checkpoint", str(tmp_path / "checkpoint.pt"), "--out",
                 str(tmp_path / "top.onnx"), "--no-calibrate"])
    model = TrayModel(tmp_path / "top.onnx")
    x = torch.randn(1, 3, 96, 128)
    s32 = model.session.run(["backbone_s32"], {model.input_name: x.numpy()})
    ours, _ = model_from_checkpoint(tmp_path / "checkpoint.pt")
    with torch.no_grad():
        want = ours.features(x)[2]
        assert not torch.allclose(want, TrayNet(28, 16, 32).features(x)[2], atol=1e-3)
    assert torch.allclose(torch.from_numpy(s32[0]), want, atol=1e-3)


def test_top_blocks_train_on_photos_with_imagenet_statistics(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    # Without the cache the backbone runs on the photos and is trained only in part: every
    # BatchNorm keeps ImageNet's statistics, the lower blocks stay as they were.
    from model.network import TOP_BLOCKS

    run(parse_args(tiny_args(fixtures_dir, tmp_path, "--epochs", "1", "--val-every", "2",
                             "--train-top-blocks", "true")))
    assert moved_backbone_blocks(tmp_path / "checkpoint.pt") == (
        {str(b) for b in range(TOP_BLOCKS, 7)}, set())


def test_top_blocks_need_a_frozen_lower_backbone(fixtures_dir: Path, tmp_path: Path) -> None:
    data = tiny_args(fixtures_dir, tmp_path)
    with pytest.raises(SystemExit, match="train_top_blocks: the whole backbone trains"):
        parse_args([*data, "--freeze-backbone", "false", "--train-top-blocks", "true"])
    with pytest.raises(SystemExit, match="train_top_blocks: train_only keeps"):
        parse_args([*data, "--freeze-bn", "true", "--train-only", '["mask"]',
                    "--train-top-blocks", "true"])
    with pytest.raises(SystemExit, match="top_blocks_lr: must be > 0"):
        parse_args([*data, "--top-blocks-lr", "0"])

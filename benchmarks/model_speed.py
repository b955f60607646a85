"""Model speed and memory, side by side in one run: ONNX Runtime fp32 vs INT8 vs torch eager.

    python benchmarks/model_speed.py [--model model/artifacts/traylens.onnx]
        [--int8 model/artifacts/traylens.int8.onnx] [--checkpoint CKPT.pt]
        [--image PHOTO.jpg] [--runs 50] [--warmup 5] [--write-docs]
        [--baseline OLD.onnx [--baseline-int8 OLD.int8.onnx]]

All three engines see the same real 1024x768 mealtray tray photo, the same numpy
pre-processing (model.infer.runtime.preprocess) and the same post-processing
(model.infer.runtime.decode_outputs); only the network engine differs. Reported per engine:
median and p95 of the network alone and of the whole photo -> items path; the fp32 file also
with its masks refined to the food (`PostConfig(refine_masks=True)`), whose photo -> items
median less the plain one is reported over the fp32 network median. Peak RSS is
measured in a separate process that imports only model.infer.runtime (no torch) and predicts.

Targets (issue 3): ORT fp32 >= 2x faster than torch eager; INT8 <= 0.6x fp32 time;
fp32 median <= 60 ms; peak RSS of the inference process <= 400 MB. `--baseline` times the
file a new one would replace (and `--baseline-int8` its INT8) as more engines in the same
blocks, for "no slower than the shipped file" (issue 16), with its ratio to the new fp32.
With --write-docs the table replaces the "## Model" section of docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

from model.infer.images import load_image  # noqa: E402
from model.infer.portion import COIN_LABEL  # noqa: E402
from model.infer.runtime import (  # noqa: E402
    PostConfig,
    TrayModel,
    decode_outputs,
    look_inside,
    preprocess,
)

DEFAULT_IMAGE = (
    REPO / "tests" / "fixtures" / "mealtray" / "labeled"
    / "20220308112654_000042_059_0000000001_B______xx_C (2770).jpg"
)
EXPECTED_SIZE = (1024, 768)
DOCS = REPO / "docs" / "BENCHMARKS.md"
HEADING = "## Model"
REFINED = "ORT fp32, refined masks"  # the same file, masks refined to the food (refine_masks)
K = TypeVar("K", bound=Hashable)

# The memory probe: a fresh interpreter that only imports the torch-free runtime. Linux keeps
# ru_maxrss across fork + exec, so the probe runs before this process grows (torch, sessions),
# and VmHWM (reset by exec) is read as a cross-check.
RSS_PROBE = """
import json, re, resource, sys
from pathlib import Path
from model.infer.images import load_image
from model.infer.runtime import TrayModel
model = TrayModel(sys.argv[1])
img = load_image(sys.argv[2])
for _ in range(int(sys.argv[3])):
    model.predict([img])
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(json.dumps({"torch_loaded": "torch" in sys.modules,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "vm_hwm_mb": int(hwm.group(1)) / 1024 if hwm else None}))
"""


@dataclass(frozen=True)
class Timing:
    """Median and 95th percentile of one measured path, in milliseconds."""

    median_ms: float
    p95_ms: float


BLOCK = 10  # timed calls of one engine in a row (runs are split into blocks of this many)


def time_in_blocks(
    calls: dict[K, Callable[[], object]], runs: int, warmup: int, block: int = BLOCK
) -> dict[K, Timing]:
    """Median and p95 wall time per callable, timed in blocks of consecutive calls.

    Engines take turns block by block, in a rotated order, so load drift on a shared
    machine falls on all alike. Not call by call: a thread pool (ONNX Runtime's, torch's
    OpenMP) keeps spinning for a while after a run and would be timed against the next
    engine; one untimed call at the start of each block absorbs the hand-over. (Timed call
    by call on this 2-core machine, fp32 ORT measured 31.7 ms instead of 13.8 ms.)
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[K, list[float]] = {name: [] for name in names}
    rounds = max(1, -(-runs // block))
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            calls[name]()  # the hand-over call, untimed
            for _ in range(min(block, runs - len(samples[name]))):
                start = time.perf_counter()
                calls[name]()
                samples[name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: Timing(float(np.median(v)), float(np.percentile(v, 95)))
        for name, v in samples.items()
    }


def ort_paths(model: TrayModel, img: Image.Image,
              post: PostConfig | None = None) -> dict[str, Callable[[], object]]:
    """Network-only and end-to-end callables for one ONNX Runtime model (`post`: the
    end-to-end path's post-processing)."""
    batch, _ = preprocess([img], model.meta)
    feed = {model.input_name: batch}
    return {
        "network": lambda: model.session.run(None, feed),
        "end_to_end": lambda: model.predict([img], cfg=post),
    }


def torch_paths(
    checkpoint: Path | None, model: TrayModel, img: Image.Image
) -> tuple[dict[str, Callable[[], object]], str]:
    """Network-only and end-to-end callables for torch eager, plus where its weights came from."""
    import torch

    from model.network import TrayNet
    from model.training.checkpoints import model_from_checkpoint

    if checkpoint is not None:
        net, _ = model_from_checkpoint(checkpoint)
        net.flip_test = model.meta.flip_test  # time the graph the ONNX file holds
        source = f"checkpoint {checkpoint.name}"
    else:
        # Same architecture as the exported file; untrained weights cost the same time.
        training = model.meta.training
        members = len(training.get("ensemble_train_seeds") or [None])
        net = TrayNet(len(model.meta.labels), model.meta.head_embedding_dim // members,
                      pretrained=False, decoupled=bool(training.get("decoupled", False)),
                      flip_test=model.meta.flip_test, members=members,
                      backbone_outputs=bool(model.meta.backbone_strides)).eval()
        source = "TrayNet built from the ONNX metadata (weights do not change the time)"
    post = PostConfig()

    def network() -> object:
        with torch.inference_mode():
            batch, _ = preprocess([img], model.meta)
            return net(torch.from_numpy(batch))

    def end_to_end() -> object:
        batch, scales = preprocess([img], model.meta)
        with torch.inference_mode():
            maps = [t[0].numpy() for t in net(torch.from_numpy(batch))]
        return decode_outputs(maps, scales[0], img.size, model.meta, post)

    return {"network": network, "end_to_end": end_to_end}, source


def peak_rss(model_path: Path, image: Path, runs: int) -> dict[str, float | bool | None]:
    """Peak RSS (MB) of a process that only imports model.infer.runtime and predicts."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(model_path), str(image), str(runs)],
        capture_output=True, text=True, check=True, env=env, cwd=REPO,
    )
    result: dict[str, float | bool | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def machine() -> str:
    """CPU model, its int8 instructions, logical CPUs and library versions, for the figures'
    context. The int8 instructions weigh on what INT8 gains: 1.5.0's INT8 file ran at 0.52 of
    fp32 on the eighth session's EPYC (not recorded; earlier sessions' EPYCs were Zen 5 with
    AVX-512 VNNI) and at 0.72 on a Zen 3 EPYC with AVX2 only."""
    import onnxruntime

    cpu = platform.processor() or "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.exists():
        text = info.read_text()
        names = re.findall(r"^model name\s*:\s*(.+)$", text, flags=re.M)
        cpu = names[0] if names else cpu
        cpu += f" ({int8_instructions(text)})"
    return f"{cpu}, {os.cpu_count()} logical CPUs, onnxruntime {onnxruntime.__version__}"


def int8_instructions(cpuinfo: str) -> str:
    """The widest int8 dot-product support /proc/cpuinfo's flags show."""
    flags = set(re.findall(r"^flags\s*:\s*(.+)$", cpuinfo, flags=re.M)[0].split()) \
        if re.search(r"^flags\s*:", cpuinfo, flags=re.M) else set()
    if "avx512_vnni" in flags:
        return "AVX-512 VNNI"
    if "avx_vnni" in flags:
        return "AVX-VNNI"
    if "avx512bw" in flags:
        return "AVX-512, no VNNI"
    return "AVX2, no VNNI" if "avx2" in flags else "no AVX2"


@dataclass(frozen=True)
class Figures:
    """Everything one run measured."""

    image_size: tuple[int, int]
    timings: dict[str, dict[str, Timing]]
    torch_source: str
    rss: dict[str, float | bool | None]
    load: tuple[float, float]  # 1-minute load average before and after: the machine is shared
    containers: tuple[float, int]  # container_cost: median ms per photo, food items timed


def measure(args: argparse.Namespace) -> Figures:
    """All figures of one run."""
    load_before = os.getloadavg()[0]
    rss = peak_rss(args.model, args.image, 5)  # first, while this process is still small
    img = load_image(args.image)
    fp32 = TrayModel(args.model)
    engines: dict[str, dict[str, Callable[[], object]]] = {
        "ORT fp32": ort_paths(fp32, img),
        REFINED: ort_paths(fp32, img, PostConfig(refine_masks=True))}
    if args.int8.is_file():
        engines["ORT INT8"] = ort_paths(TrayModel(args.int8), img)
    for name, path in (("baseline fp32", args.baseline), ("baseline INT8", args.baseline_int8)):
        if path is not None:
            base = TrayModel(path)
            engines[f"{name} ({base.meta.version})"] = ort_paths(base, img)
    torch_calls, torch_source = torch_paths(args.checkpoint, fp32, img)
    engines["torch eager"] = torch_calls
    flat = {(engine, path): fn for engine, calls in engines.items() for path, fn in calls.items()}
    timings: dict[str, dict[str, Timing]] = {engine: {} for engine in engines}
    for (engine, path), timing in time_in_blocks(flat, args.runs, args.warmup).items():
        timings[engine][path] = timing
    return Figures(img.size, timings, torch_source, rss, (load_before, os.getloadavg()[0]),
                   container_cost(fp32, img, args.runs))


def container_cost(model: TrayModel, img: Image.Image, runs: int) -> tuple[float, int]:
    """(median ms, food items) of recording what each food item's box shows on one photo
    (`PostConfig(containers=True)`: runtime.look_inside on the photo's predicted items),
    timed alone: a few ms vanish in the photo -> items medians' noise."""
    items = model.predict([img])[0].items
    cfg = PostConfig(containers=True)
    times = []
    for _ in range(max(1, runs)):
        began = time.perf_counter()
        look_inside(img, items, img.size, cfg)
        times.append((time.perf_counter() - began) * 1000)
    foods = sum(1 for it in items if it.mask is not None and it.label != COIN_LABEL)
    return float(np.median(times)), foods


def ratios(timings: dict[str, dict[str, Timing]], path: str) -> dict[str, float]:
    """The target ratios on medians of one path (network or end_to_end)."""
    fp32 = timings["ORT fp32"][path].median_ms
    out = {"torch eager / ORT fp32": timings["torch eager"][path].median_ms / fp32}
    if "ORT INT8" in timings:
        out["ORT INT8 / ORT fp32"] = timings["ORT INT8"][path].median_ms / fp32
    for engine in timings:
        if engine.startswith("baseline fp32"):
            out["ORT fp32 / " + engine] = fp32 / timings[engine][path].median_ms
    return out


def refine_cost(timings: dict[str, dict[str, Timing]]) -> float | None:
    """What refining the masks adds to a photo, over the fp32 network median (None: not
    timed): the two engines' photo -> items medians apart."""
    if REFINED not in timings:
        return None
    added = timings[REFINED]["end_to_end"].median_ms - timings["ORT fp32"]["end_to_end"].median_ms
    return added / timings["ORT fp32"]["network"].median_ms


def report(figures: Figures, args: argparse.Namespace) -> str:
    """The figures as the markdown '## Model' section."""
    timings, rss = figures.timings, figures.rss
    width, height = figures.image_size
    shown = args.image.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    lines = [
        HEADING, "",
        f"Measured by `python benchmarks/model_speed.py` on {time.strftime('%Y-%m-%d')}: "
        f"{machine()}; photo `{shown}` ({width}x{height}); "
        f"{args.runs} timed runs per path after {args.warmup} warm-up rounds, engines taking "
        f"turns in blocks of {BLOCK} consecutive runs (each block after one untimed run); "
        f"batch 1; default threads; 1-min load average {figures.load[0]:.1f} before, "
        f"{figures.load[1]:.1f} after (other work on the machine inflates times and p95). "
        f"Torch eager: {figures.torch_source}.", "",
        "| engine | network median ms | network p95 ms | photo -> items median ms "
        "| photo -> items p95 ms |", "|---|---:|---:|---:|---:|",
    ]
    for engine, paths in timings.items():
        n, e = paths["network"], paths["end_to_end"]
        lines.append(f"| {engine} | {n.median_ms:.1f} | {n.p95_ms:.1f} | {e.median_ms:.1f} "
                     f"| {e.p95_ms:.1f} |")
    lines += ["", "| ratio of medians (target) | network | photo -> items |", "|---|---:|---:|"]
    net, e2e = ratios(timings, "network"), ratios(timings, "end_to_end")
    targets = {"torch eager / ORT fp32": ">= 2", "ORT INT8 / ORT fp32": "<= 0.6"}
    lines += [f"| {k} ({targets.get(k, '<= 1')}) | {net[k]:.2f} | {e2e[k]:.2f} |" for k in net]
    cost = refine_cost(timings)
    if cost is not None:
        lines += ["", f"Refined masks (`PostConfig(refine_masks=True)`, model.infer.refine) add "
                  f"{cost:.2f} of the fp32 network median to a photo (photo -> items medians "
                  "apart; the model card's rule for making it the default: <= 0.25)."]
    ms, foods = figures.containers
    lines += ["", f"Recording what each box shows (`PostConfig(containers=True)`, "
              f"model.infer.refine.container_state) takes {ms:.2f} ms per photo, timed alone "
              f"({foods} food items; the rule for reading an emptied container as eaten: "
              "<= 2 ms)."]
    fp32_ms = timings["ORT fp32"]["end_to_end"].median_ms
    lines += ["", f"ORT fp32 photo -> items median {fp32_ms:.1f} ms (target <= 60 ms). "
              "Peak RSS of a process that imports only model.infer.runtime and "
              f"predicts: {rss['peak_rss_mb']:.0f} MB by ru_maxrss, {rss['vm_hwm_mb']:.0f} MB by "
              f"VmHWM (target <= 400 MB; torch loaded: {rss['torch_loaded']}).", ""]
    return "\n".join(lines)


def write_section(doc: Path, section: str, heading: str = HEADING) -> None:
    """Replace (or append) this script's section of the benchmarks doc, keeping the others."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    # The heading as a whole line: "## Service" must not match "## Service core".
    found = re.search(rf"^{re.escape(heading)}$", text, flags=re.MULTILINE)
    if found is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", found.end())
        text = text[:found.start()] + section + (text[end:] if end >= 0 else "")
    doc.write_text(text, encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    art = REPO / "model" / "artifacts"
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=art / "traylens.onnx", help="fp32 ONNX file")
    p.add_argument("--int8", type=Path, default=art / "traylens.int8.onnx", help="INT8 ONNX file")
    p.add_argument("--checkpoint", type=Path, help="torch checkpoint for the eager engine")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a real tray photo")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--write-docs", action="store_true", help=f"write '{HEADING}' of {DOCS}")
    p.add_argument("--baseline", type=Path, help="the fp32 file the --model would replace")
    p.add_argument("--baseline-int8", type=Path, help="that file's INT8")
    args = p.parse_args(argv)
    for path in (args.baseline, args.baseline_int8):
        if path is not None and not path.is_file():
            p.error(f"baseline file not found: {path}")
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    with Image.open(args.image) as im:
        if im.size != EXPECTED_SIZE:
            print(f"note: {args.image} is {im.size[0]}x{im.size[1]}, not 1024x768", file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, print the section, optionally write it into docs/BENCHMARKS.md."""
    args = parse_args(argv)
    if not args.model.is_file():
        print(f"error: model file not found: {args.model}", file=sys.stderr)
        return 2
    section = report(measure(args), args)
    print(section)
    if args.write_docs:
        write_section(DOCS, section)
        print(f"wrote '{HEADING}' in {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

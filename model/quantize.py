"""Static INT8 (QDQ, per-channel weights) quantisation with real calibration photos.

python -m model.quantize --model model/artifacts/traylens.onnx \
    --out model/artifacts/traylens.int8.onnx --calib-dir ../shared/data/images/mealtray/labeled

Calibration images go through model.runtime's own pre-processing, so activation ranges are
those of real inference inputs. The metadata (labels, portions, ...) is copied across.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from model.export import read_meta, write_meta
from model.runtime import ModelMeta, load_image, preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PhotoReader(CalibrationDataReader):
    """Feeds preprocessed real photos, one per call, to the ORT calibrator."""

    def __init__(self, paths: Sequence[Path], meta: ModelMeta, input_name: str) -> None:
        if not paths:
            raise ValueError("quantisation needs at least one calibration image")
        self._iter: Iterator[Path] = iter(paths)
        self.meta = meta
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._iter, None)
        if path is None:
            return None
        batch, _ = preprocess([load_image(path, fit=self.meta.input_size)], self.meta)
        return {self.input_name: batch}


def calibration_images(folders: Sequence[Path], per_folder: int, seed: int = 0) -> list[Path]:
    """A seeded sample of photos from each folder (spread over the sources)."""
    rng = np.random.default_rng(seed)
    out: list[Path] = []
    for folder in folders:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{folder}: no calibration images")
        pick = rng.choice(len(files), size=min(per_folder, len(files)), replace=False)
        out.extend(files[i] for i in sorted(pick))
    return out


def output_head_nodes(graph: onnx.GraphProto) -> list[str]:
    """Nodes from each output back to (and including) the last Conv that feeds it.

    Why keep them in float: the prediction maps are scores and pixel distances read by
    numpy post-processing. Quantised, a heatmap turns into plateaus of equal values, each
    cell of which is a 3x3 "peak": more candidates and a slower decode (1.0.0's INT8 file
    spent 14 ms from network output to items against 6 ms for fp32; with float heads 1.1.0
    spends 8 ms in both), for convolutions that cost ~1% of the network.
    """
    producer = {out: node for node in graph.node for out in node.output}
    keep: list[str] = []
    todo = [o.name for o in graph.output]
    seen: set[str] = set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type != "Conv":
            todo.extend(node.input)
    return keep


# The stem conv and Lite0's first block (depthwise 3x3, pointwise 32 -> 16 channels).
FLOAT_STEM_CONVS = 3


def input_stem_nodes(graph: onnx.GraphProto, convs: int = FLOAT_STEM_CONVS) -> list[str]:
    """Nodes from the image input forward through its first `convs` Convs.

    Why keep them in float: at full resolution over few channels ONNX Runtime's u8 x s8
    kernels gain little (the 3-channel stem ran at 1.5 ms quantised against 0.7 ms in float,
    the 32-channel depthwise 3x3 at 0.54 against 0.57), and the photo and the 32-channel
    map need quantising and re-laying out; quantising after the 16-channel block output
    costs half as much. Measured on the Intel Xeon with the 1.3.0 file (engines interleaved
    in blocks of 10 runs): INT8 network 17.4 -> 16.7 ms, 0.62 -> 0.60 of fp32, and held-out
    mealtray mAP 0.821 -> 0.867 (quantisation error of the first layers reaches every map).
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights = {t.name for t in graph.initializer}
    keep: list[str] = []
    todo = [(i.name, 0) for i in graph.input if i.name not in weights]
    seen: set[str] = set()
    while todo:
        tensor, depth = todo.pop()
        for node in consumers.get(tensor, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            keep.append(node.name)
            passed = depth + (node.op_type == "Conv")
            # a Shape's output is the batch size, not pixels: not the stem
            if passed < convs and node.op_type != "Shape":
                todo.extend((out, passed) for out in node.output)
    return keep


def quantize(model_path: str | Path, out: str | Path, images: Sequence[Path]) -> Path:
    """Write the INT8 QDQ model; weights per-channel int8, activations uint8 (MinMax).

    The output heads (output_head_nodes) and the input stem (input_stem_nodes) stay float.
    Weights use 7 bits (reduce_range): on x86 CPUs without VNNI (AVX2 only, e.g. the AMD
    EPYC CI machines) ONNX Runtime's u8 x s8 kernel adds pairs of products in int16, which
    saturates with full-range weights. Measured on the held-out mealtray runs with a trial
    run of the 1.1.0 recipe: full-range weights lost 0.13 mAP, 7-bit weights 0.05; the
    shipped 1.1.0 INT8 file loses 0.03.
    """
    model_path, out = Path(model_path), Path(out)
    meta = read_meta(model_path)
    input_name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        exclude = output_head_nodes(graph) + input_stem_nodes(graph)
        quantize_static(
            str(prepared), str(out), PhotoReader(images, meta, input_name),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
        )
    proto = onnx.load(str(out))
    write_meta(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.quantize", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--calib-dir", nargs="+", type=Path, required=True,
                   help="folders of real photos (a seeded sample of each is used)")
    p.add_argument("--per-folder", type=int, default=48)
    a = p.parse_args(argv)
    images = calibration_images(a.calib_dir, a.per_folder)
    out = quantize(a.model, a.out, images)
    print(json.dumps({"int8": str(out), "bytes": out.stat().st_size,
                      "calibration_images": len(images)}))


if __name__ == "__main__":
    main()

"""Static INT8 (QDQ, per-channel weights) quantisation with real calibration photos.

python -m model.quantize --model model/artifacts/traylens.onnx \
    --out model/artifacts/traylens.int8.onnx --calib-dir ../shared/data/images/mealtray/labeled

Calibration images go through model.infer.runtime's own pre-processing, so activation ranges are
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
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from model.export import read_meta, write_meta
from model.infer.images import load_image
from model.infer.runtime import BACKBONE_OUTPUTS, ModelMeta, preprocess

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
    """Nodes from each output back to (and including) the last Conv (or MatMul) that feeds it.

    Why keep them in float: the prediction maps are scores and pixel distances read by
    numpy post-processing. Quantised, a heatmap turns into plateaus of equal values, each
    cell of which is a 3x3 "peak": more candidates and a slower decode (1.0.0's INT8 file
    spent 14 ms from network output to items against 6 ms for fp32; with float heads 1.1.0
    spends 8 ms in both), for convolutions that cost ~1% of the network. The backbone maps of
    the backbone descriptor are not prediction maps (their means over a box are what count):
    the backbone stays quantised up to them.
    """
    producer = {out: node for node in graph.node for out in node.output}
    keep: list[str] = []
    todo = [o.name for o in graph.output if o.name not in BACKBONE_OUTPUTS]
    seen: set[str] = set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type not in ("Conv", "MatMul"):
            todo.extend(node.input)
    return keep


def pointwise_heads_as_matmul(model: onnx.ModelProto) -> list[str]:
    """Rewrite each head's last 1x1 Conv as Transpose -> MatMul -> Add -> Transpose, in place.

    Returns the MatMul node names. Why: quantised with int8 input and weights but a float
    output (float_matmul_outputs), ONNX Runtime fuses such a MatMul into MatMulIntegerToFloat,
    which reads the int8 map directly. A float Conv there needs a DequantizeLinear of its
    64-channel input and a reorder into the float Conv's blocked layout, for each head. The
    maps stay float from int32 accumulators: no plateaus (output_head_nodes). Measured on the
    AMD EPYC with the 1.3.0 weights, files side by side: INT8 network 11.6 -> 11.5 ms in one
    run, 15.0 -> 14.0 ms in another (the machine's speed varied between them).
    """
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    heads = set(output_head_nodes(graph))
    nodes: list[onnx.NodeProto] = []
    matmuls: list[str] = []
    for node in graph.node:
        if node.name not in heads or not _is_pointwise(node, weights):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])[:, :, 0, 0]
        b = (numpy_helper.to_array(weights[node.input[2]]) if len(node.input) > 2
             else np.zeros(w.shape[0], np.float32))
        name, x, y = node.name, node.input[0], node.output[0]
        graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(w.T), name + "_wt"),
                                  numpy_helper.from_array(b, name + "_b")])
        nodes += [
            helper.make_node("Transpose", [x], [name + "_nhwc"], name + "_in", perm=[0, 2, 3, 1]),
            helper.make_node("MatMul", [name + "_nhwc", name + "_wt"], [name + "_mm"],
                             name + "_matmul"),
            helper.make_node("Add", [name + "_mm", name + "_b"], [name + "_out"], name + "_bias"),
            helper.make_node("Transpose", [name + "_out"], [y], name + "_nchw", perm=[0, 3, 1, 2]),
        ]
        matmuls.append(name + "_matmul")
    del graph.node[:]
    graph.node.extend(nodes)
    return matmuls


def _is_pointwise(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    """A plain 1x1 Conv (stride 1, no groups, no padding) with constant weights."""
    if node.op_type != "Conv" or node.input[1] not in weights:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kernel = tuple(weights[node.input[1]].dims[2:])
    return (kernel == (1, 1) and attrs.get("group", 1) == 1
            and set(attrs.get("strides", [1, 1])) == {1} and not any(attrs.get("pads", [0]))
            and set(attrs.get("dilations", [1, 1])) == {1})


def float_matmul_outputs(model: onnx.ModelProto, matmuls: Sequence[str]) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pair after each named MatMul, in place.

    The quantiser re-quantises a MatMul's output; without the pair ONNX Runtime's
    MatMulIntegerToFloat writes the float map. Returns the number of
    QuantizeLinear nodes removed.
    """
    graph = model.graph
    outputs = {n.output[0] for n in graph.node if n.name in matmuls}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop: set[str] = set()
    rename: dict[str, str] = {}
    removed = 0
    for out in outputs:
        for q in consumers.get(out, []):
            readers = consumers.get(q.output[0], [])
            if q.op_type != "QuantizeLinear" or not readers or any(
                    r.op_type != "DequantizeLinear" for r in readers):
                continue
            removed += 1
            drop.add(q.name)
            for dq in readers:
                rename[dq.output[0]] = out
                drop.add(dq.name)
    kept = [n for n in graph.node if n.name not in drop]
    for node in kept:
        node.input[:] = [rename.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]  # the pairs' scales...
    for tensor in unused:
        graph.initializer.remove(tensor)
    return removed


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

    The input stem (input_stem_nodes) stays float; each output head's last 1x1 layer reads the
    int8 map and writes float maps (pointwise_heads_as_matmul); the rest of the heads after it
    (activations, the flip-test average) stay float.
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
        proto = onnx.load(str(prepared))
        matmuls = pointwise_heads_as_matmul(proto)
        onnx.save_model(proto, str(prepared))
        graph = proto.graph
        exclude = [n for n in output_head_nodes(graph) if n not in matmuls]
        exclude += input_stem_nodes(graph)
        quantize_static(
            str(prepared), str(out), PhotoReader(images, meta, input_name),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
        )
    proto = onnx.load(str(out))
    float_matmul_outputs(proto, matmuls)
    producer = {o: n.op_type for n in proto.graph.node for o in n.output}
    for node in (n for n in proto.graph.node if n.name in matmuls):
        if any(producer.get(name) != "DequantizeLinear" for name in node.input):
            raise RuntimeError(f"{out}: head {node.name} was left unquantised")
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

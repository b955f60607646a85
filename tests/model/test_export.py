"""ONNX export: checker, dynamic batch, metadata, torch vs ORT parity (maps and items)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from model import export
from model.data.coco import CocoDataset
from model.infer.images import load_image
from model.infer.runtime import ModelFileError, ModelMeta, PostConfig, TrayModel
from model.network import TrayNet
from tests.model.conftest import TinyExport, assert_torch_and_onnx_agree


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_onnx: TinyExport,
             ) -> tuple[TrayNet, ModelMeta, Path]:
    return tiny_onnx(tmp_path_factory.mktemp("onnx") / "m.onnx")


@pytest.fixture(scope="module")
def photos(fixtures_dir: Path) -> list[Path]:
    return [fixtures_dir / "ecustfd" / "JPEGImages" / "mix001T(1).JPG",
            next((fixtures_dir / "mealtray" / "labeled").glob("*.jpg"))]


def test_file_passes_checker_with_opset_and_dynamic_batch(exported: tuple) -> None:
    _, _, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert any(o.domain in ("", "ai.onnx") and o.version == export.OPSET
               for o in proto.opset_import)
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # symbolic batch


def test_metadata_round_trip(exported: tuple) -> None:
    _, meta, path = exported
    assert export.read_meta(path) == meta
    rt = TrayModel(path)
    assert rt.meta == meta
    new = export.update_meta(path, metrics={"map50": 0.5})
    assert TrayModel(path).meta.metrics == {"map50": 0.5} and new.labels == meta.labels


def test_parity_on_real_photos_and_batch_sizes(exported: tuple, photos: list[Path]) -> None:
    model, _, path = exported
    diffs = export.parity(model, path, photos)
    export.check_parity(diffs)  # raises beyond PARITY_ATOL
    assert set(diffs) == {"heatmap", "ltrb", "mask", "embedding"}
    rt = TrayModel(path)
    one, _ = rt.run([load_image(photos[0])])
    three, _ = rt.run([load_image(p) for p in [*photos, photos[0]]])
    assert np.allclose(one[0][0], three[0][0], atol=1e-5)
    with pytest.raises(export.ExportError, match="beyond"):
        export.check_parity({"heatmap": 1.0})


def test_flip_test_file_matches_torch_and_says_so(tmp_path: Path, photos: list[Path],
                                                  tiny_onnx: TinyExport) -> None:
    model, meta, path = tiny_onnx(tmp_path / "flip.onnx", decoupled=True, flip_test=True,
                                  members=3)  # the shipped-like export the other tests share
    assert meta.flip_test and TrayModel(path).meta.flip_test
    export.check_parity(export.parity(model, path, photos))
    rt = TrayModel(path)
    one, _ = rt.run([load_image(photos[1])])
    two, _ = rt.run([load_image(p) for p in [photos[0], photos[1]]])
    for a, b in zip(one, two, strict=True):  # each photo averaged with its own mirror only
        assert np.allclose(a[0], b[1], atol=1e-5)


def test_ensemble_file_matches_torch_with_every_members_embedding(
    tmp_path: Path, photos: list[Path], tiny_onnx: TinyExport
) -> None:
    model, _, path = tiny_onnx(tmp_path / "ens.onnx", decoupled=True, flip_test=True,
                                 members=3)
    export.check_parity(export.parity(model, path, photos))
    rt = TrayModel(path)
    assert rt.meta.embedding_dim == 48
    items = rt.predict([load_image(photos[0])], cfg=PostConfig(score_min=0.0, max_items=3))[0].items
    assert items and all(it.embedding.shape == (48,) for it in items)
    assert all(abs(float(np.linalg.norm(it.embedding)) - 1.0) < 1e-5 for it in items)


def test_a_file_exported_again_with_the_backbone_descriptor(
    tmp_path: Path, photos: list[Path], tiny_onnx: TinyExport, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--onnx` reads the weights back from a file: its four maps stay the source file's, the
    two backbone maps follow, and an item's embedding holds the source's beside them."""
    _, _, source = tiny_onnx(tmp_path / "flip.onnx", decoupled=True, flip_test=True, members=3)
    out = tmp_path / "descriptor.onnx"
    with pytest.raises(export.ExportError, match="version other than test"):
        export.reexport(source, out, backbone_descriptor=True)
    export.main(["--onnx", str(source), "--backbone-descriptor", "true", "--version", "test-2",
                 "--out", str(out), "--parity-images", *map(str, photos)])
    report = json.loads(capsys.readouterr().out)
    assert report["from"]["file"] == "flip.onnx" and report["version"] == "test-2"
    assert max(report["source_parity_max_abs"].values()) == 0.0
    assert set(report["parity_max_abs"]) == {"heatmap", "ltrb", "mask", "embedding",
                                             "backbone_s16", "backbone_s32"}
    old, new = TrayModel(source), TrayModel(out)
    assert new.meta.backbone_descriptor == {"strides": [16, 32], "channels": [112, 320]}
    assert (new.meta.embedding_dim, new.meta.head_embedding_dim) == (48 + 432, 48)
    assert new.meta.portion == old.meta.portion and new.meta.metrics == {}
    cfg = PostConfig(score_min=0.0, max_items=5)
    img = load_image(photos[0])
    before, after = old.predict([img], cfg=cfg)[0].items, new.predict([img], cfg=cfg)[0].items
    assert [i.box for i in before] == [i.box for i in after]
    for a, b in zip(before, after, strict=True):
        assert b.embedding.shape == (480,)
        assert np.allclose(b.embedding[:48] * np.sqrt(2), a.embedding, atol=1e-5)
    box = tuple(after[0].box)
    x0, y0, x1, y1 = (round(v) for v in box)
    mask = np.zeros((img.height, img.width), bool)
    mask[y0:y1, x0:x1] = True
    by_box = new.embed_enrolment(img, boxes=[box])[0][48:]
    by_mask = new.embed_enrolment(img, masks=[mask])[0][48:]
    assert float(by_box @ by_mask) > 0.49  # both halves of unit vectors: 0.5 when equal


def test_torch_path_and_onnx_path_give_the_same_items(exported: tuple,
                                                      photos: list[Path]) -> None:
    model, meta, path = exported
    rt = TrayModel(path)
    cfg = PostConfig(score_min=0.02, max_items=10)
    assert_torch_and_onnx_agree(model, rt, meta, load_image(photos[0]), cfg, score_abs=1e-3,
                                cosine_min=0.999)


def test_missing_metadata_is_an_error(exported: tuple, tmp_path: Path) -> None:
    _, _, path = exported
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save_model(proto, str(bare))
    with pytest.raises(export.ExportError, match="no 'traylens'"):
        export.read_meta(bare)


def test_metadata_that_claims_other_outputs_is_refused(exported: tuple, tmp_path: Path) -> None:
    """A file whose metadata names the backbone descriptor but whose graph has only the four
    maps cannot be served: its embeddings would not be what the metadata says."""
    _, meta, path = exported
    lying = tmp_path / "lying.onnx"
    lying.write_bytes(path.read_bytes())
    export.update_meta(lying, backbone_descriptor={"strides": [16, 32], "channels": [112, 320]},
                       embedding_dim=meta.embedding_dim + 432)
    with pytest.raises(ModelFileError, match="outputs 4 maps; its metadata describes 6"):
        TrayModel(lying)


def test_record_metrics_carries_the_evaluation_headline(
    exported: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m model.export --record-metrics` writes model.evaluate's headline into the file."""
    import json
    import shutil

    _, meta, path = exported
    copy = shutil.copy(path, tmp_path / "m.onnx")
    result = {"model": {"file": "/elsewhere/m.onnx"}, "headline": {"mealtray_map50": 0.42}}
    (tmp_path / "metrics.json").write_text(json.dumps(result))
    export.main(["--out", str(copy), "--record-metrics", str(tmp_path / "metrics.json")])
    recorded = TrayModel(copy).meta
    assert recorded.metrics == {"evaluated_file": "m.onnx", "held_out": {"mealtray_map50": 0.42}}
    assert recorded.labels == meta.labels and recorded.fingerprint == meta.fingerprint
    with pytest.raises(SystemExit) as usage:
        export.main(["--out", str(copy)])  # neither a checkpoint nor metrics: a usage error
    assert usage.value.code == 2 and "--checkpoint or --onnx is required" in capsys.readouterr().err


@pytest.mark.parametrize("stem", ["traylens", "traylens.int8"])
def test_shipped_files_carry_their_committed_evaluation(stem: str) -> None:
    """The metrics inside each shipped ONNX file are those of its committed evaluation."""
    import json

    artifacts = Path(__file__).resolve().parents[2] / "model" / "artifacts"
    meta = TrayModel(artifacts / f"{stem}.onnx").meta
    result = json.loads((artifacts / f"{stem}.metrics.json").read_text(encoding="utf-8"))
    assert meta.metrics == {"evaluated_file": f"{stem}.onnx", "held_out": result["headline"]}
    assert (meta.version, meta.fingerprint) == (result["model"]["version"],
                                                result["model"]["fingerprint"])


def test_portion_samples_pair_each_found_object_with_its_grams(model_path: Path,
                                                               ecustfd_ds: CocoDataset) -> None:
    """The portion fit's samples: the shipped model, run as the service runs it, over the
    fixture photos; each object it finds gives its label, its mask area and its weighed grams."""
    labels, areas, grams = export.portion_samples(TrayModel(model_path), ecustfd_ds)
    weighed = [a for a in ecustfd_ds.annotations if a.grams]
    assert 0 < len(labels) == len(areas) == len(grams) <= len(weighed)
    assert all(area > 0 for area in areas)
    assert set(grams) <= {float(a.grams) for a in weighed}  # type: ignore[arg-type]
    assert set(labels) <= set(ecustfd_ds.category_names().values())

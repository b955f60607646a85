"""Names only when sure: the open-set check's fit, its rule, its metadata and its CLI."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from model import export
from model.data.coco import CocoDataset
from model.evaluate import predict_dataset
from model.infer import naming
from model.infer.runtime import ModelFileError, PostConfig, TrayModel
from tests.model.conftest import fixture_sources


def _unit(*rows: list[float]) -> np.ndarray:
    vecs = np.asarray(rows, np.float64)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_fit_gives_normalised_mean_prototypes_and_quantile_thresholds() -> None:
    emb = _unit([1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.3], [0, 1, 0], [0.1, 1, 0])
    fitted = naming.fit_open_set([0, 0, 0, 1, 1], emb, n_classes=3, quantile=0.0)
    mean0 = emb[:3].mean(axis=0)
    assert np.allclose(fitted.prototypes[0], mean0 / np.linalg.norm(mean0), atol=1e-6)
    assert fitted.min_cos[0] == pytest.approx(float((emb[:3] @ fitted.prototypes[0]).min()),
                                              abs=1e-6)
    assert fitted.regions == (3, 2, 0)
    assert not fitted.prototypes[2].any() and np.isinf(fitted.min_cos[2])  # never seen
    half = naming.fit_open_set([0, 0, 0, 1, 1], emb, 3, quantile=0.5)
    assert half.min_cos[0] == pytest.approx(
        float(np.median(emb[:3] @ half.prototypes[0])), abs=1e-6)


def test_group_thresholds_come_from_the_other_groups_prototype() -> None:
    # Class 0: two objects ("a", "b") of two regions each, and a third object ("c") alone.
    emb = _unit([1, 0.1, 0], [1, 0.2, 0], [1, -0.3, 0.2], [1, -0.2, 0.3], [0.6, 0.8, 0],
                [0, 1, 0], [0.1, 1, 0])
    labels, groups = [0, 0, 0, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "r", "r"]
    own = naming.fit_open_set(labels, emb, 2, quantile=0.0)
    held = naming.fit_open_set(labels, emb, 2, quantile=0.0, groups=groups)
    # The prototypes are the same (all of a class's regions); only the thresholds move.
    assert np.allclose(held.prototypes, own.prototypes)
    assert (own.thresholds, held.thresholds) == ("own", "groups")
    # By hand: each region against the mean of its class's other objects.
    c0, g0 = emb[:5], np.array(groups[:5], dtype=object)
    by_hand = naming.held_out_cosines(c0, g0)
    for i in range(5):
        others = c0[g0 != g0[i]].mean(axis=0)
        assert by_hand[i] == pytest.approx(float(c0[i] @ others / np.linalg.norm(others)))
    assert held.min_cos[0] == pytest.approx(float(by_hand.min()), abs=1e-6)
    # A new object is further from the others' prototype than from one it made itself.
    assert held.min_cos[0] < own.min_cos[0]
    # Class 1 has one object only: its own-region threshold stays.
    assert held.min_cos[1] == pytest.approx(float(own.min_cos[1]))
    back = naming.OpenSet.from_json(json.loads(json.dumps(held.to_json())), 2, 3)
    assert back.thresholds == "groups"
    with pytest.raises(naming.OpenSetError, match="groups for"):
        naming.fit_open_set(labels, emb, 2, groups=groups[:3])
    with pytest.raises(naming.OpenSetError, match="thresholds must be"):
        naming.OpenSet.from_json({**held.to_json(), "thresholds": "x"}, 2, 3)


def test_knn_keeps_the_regions_and_takes_thresholds_from_the_nearest_other_object() -> None:
    # Class 0 has two looks (objects "a" and "b" one way, "c" and "d" another), class 1 one.
    emb = _unit([1, 0, 0.1], [1, 0, -0.1], [1, 0.05, 0], [0, 0.3, 1], [0, 0.25, 1],
                [0.05, 0.3, 1], [0, 1, 0.6], [0.1, 1, 0.6], [0, 1, 0.7])
    labels = [0, 0, 0, 0, 0, 0, 1, 1, 1]
    groups = ["a", "a", "b", "c", "c", "d", "r", "s", "s"]
    knn = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups, knn=True)
    assert knn.thresholds == "knn" and knn.regions == (6, 3, 0)
    assert knn.bank is not None and knn.bank_labels is not None
    assert np.allclose(knn.bank, emb, atol=1e-6) and list(knn.bank_labels) == labels
    # By hand: each class-0 region's nearest region of another object, the least of them.
    c0, g0 = emb[:6], np.array(groups[:6], dtype=object)
    by_hand = [max(float(c0[i] @ c0[j]) for j in range(6) if g0[j] != g0[i]) for i in range(6)]
    assert np.allclose(naming.nearest_other_group_cosines(c0, g0), by_hand)
    assert knn.min_cos[0] == pytest.approx(min(by_hand), abs=1e-6)
    assert np.isinf(knn.min_cos[2])  # no region: never named
    # A new object of the second look: the mean of both looks is farther from it than class
    # 1's, its nearest region is one of the look. The prototype check refuses it; the
    # regions' check names it.
    sure = np.array([0.9, 0.05, 0.05], np.float32)
    new_look = _unit([0.02, 0.28, 1])[0]
    groups_check = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups)
    assert naming.unnamed_reason(sure, 0, new_look, 0.5, groups_check) == "other_prototype"
    assert naming.unnamed_reason(sure, 0, new_look, 0.5, knn) is None
    # Nearest to a region of class 1: another class's; far from every region: below.
    assert naming.unnamed_reason(sure, 0, _unit([0.05, 1, 0.65])[0], 0.5, knn) \
        == "other_prototype"
    assert naming.unnamed_reason(sure, 0, _unit([1, -1, 0])[0], 0.5, knn) == "below_threshold"
    # One object only: its regions' nearest other region; one region: never named.
    single = naming.fit_open_set([0, 0, 1], emb[[0, 1, 6]], 2, quantile=0.0,
                                 groups=["a", "a", "r"], knn=True)
    assert single.min_cos[0] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-6)
    assert np.isinf(single.min_cos[1])
    with pytest.raises(naming.OpenSetError, match="need each region's group"):
        naming.fit_open_set(labels, emb, 3, knn=True)
    # The metadata keeps the bank (float16) and the runtime's rule reads it back.
    back = naming.OpenSet.from_json(json.loads(json.dumps(knn.to_json())), 3, 3)
    assert back.thresholds == "knn" and back.bank is not None and back.bank_labels is not None
    assert np.allclose(back.bank, knn.bank, atol=1e-3)
    assert list(back.bank_labels) == labels
    assert naming.unnamed_reason(sure, 0, new_look, 0.5, back) is None
    entry = knn.to_json()
    for bad, match in (({"bank": "not base64!"}, "bad open_set bank"),
                       ({"bank_labels": labels[:-1]}, "does not fit"),
                       ({"bank_labels": [*labels[:-1], 3]}, "does not fit")):
        with pytest.raises(naming.OpenSetError, match=match):
            naming.OpenSet.from_json({**entry, **bad}, 3, 3)
    with pytest.raises(naming.OpenSetError, match="bad open_set bank"):
        naming.OpenSet.from_json({k: v for k, v in entry.items() if k != "bank"}, 3, 3)


def test_pooled_caps_each_knn_threshold_at_its_sources() -> None:
    # Source "m": class 0 of two alike objects (a tight threshold), class 1 of two objects
    # far apart. Source "e": class 2 alone. q = 0: a threshold is the least nearest cosine.
    emb = _unit([1, 0, 0.02], [1, 0, -0.02], [1, 0.01, 0], [0, 1, 0], [0.5, 1, 1], [0, 0.2, 1],
                [0.1, 0.2, 1])
    labels, groups = [0, 0, 0, 1, 1, 2, 2], ["a", "a", "b", "c", "d", "e", "f"]
    sources = ["m", "m", "m", "m", "m", "e", "e"]
    knn = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups, knn=True)
    pooled = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups, knn=True,
                                 sources=sources)
    assert pooled.thresholds == "pooled" and pooled.bank is not None
    cap = min(knn.min_cos[0], knn.min_cos[1])  # source m's least nearest cosine: class 1's
    assert knn.min_cos[0] > cap
    assert pooled.min_cos[0] == pytest.approx(cap) and pooled.min_cos[1] == pytest.approx(cap)
    assert pooled.min_cos[2] == pytest.approx(knn.min_cos[2])  # alone in its source
    # A new object of class 0 a little off its look: knn refuses it, pooled names it.
    sure, new = np.array([0.9, 0.05, 0.05], np.float32), _unit([1, 0.3, 0.1])[0]
    assert naming.unnamed_reason(sure, 0, new, 0.5, knn) == "below_threshold"
    assert naming.unnamed_reason(sure, 0, new, 0.5, pooled) is None
    back = naming.OpenSet.from_json(json.loads(json.dumps(pooled.to_json())), 3, 3)
    assert back.thresholds == "pooled" and np.allclose(back.min_cos, pooled.min_cos, atol=1e-5)
    # Read back, the check still asks the bank, not the prototypes (before 2026-12-06 a
    # pooled file lost its bank on loading and named by the prototypes).
    assert back.bank is not None and np.allclose(back.bank, pooled.bank, atol=1e-3)
    assert naming.unnamed_reason(sure, 0, new, 0.5, back) is None
    with pytest.raises(naming.OpenSetError, match="knn fit's"):
        naming.fit_open_set(labels, emb, 3, groups=groups, sources=sources)
    with pytest.raises(naming.OpenSetError, match="sources for"):
        naming.fit_open_set(labels, emb, 3, groups=groups, knn=True, sources=sources[:2])


def test_borrowed_caps_only_the_classes_seen_on_one_object() -> None:
    # One source. Class 0: three regions of one object (its knn threshold is how alike that
    # object's photos are). Class 1: two objects far apart. Class 2: two alike objects.
    emb = _unit([1, 0, 0.02], [1, 0, -0.02], [1, 0.01, 0], [0, 1, 0], [0.5, 1, 1],
                [0, 0.2, 1], [0.02, 0.2, 1])
    labels, groups = [0, 0, 0, 1, 1, 2, 2], ["a", "a", "a", "c", "d", "g", "h"]
    sources = ["m"] * 7
    knn = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups, knn=True)
    pooled = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups, knn=True,
                                 sources=sources)
    borrowed = naming.fit_open_set(labels, emb, 3, quantile=0.0, groups=groups, knn=True,
                                   sources=sources, borrow=True)
    assert borrowed.thresholds == "borrowed" and borrowed.bank is not None
    cap = knn.min_cos[1]  # the source's least nearest cosine: class 1's two far objects
    assert knn.min_cos[0] > cap and knn.min_cos[2] > cap
    assert borrowed.min_cos[0] == pytest.approx(cap)  # one object: borrows the source's bar
    assert borrowed.min_cos[2] == pytest.approx(knn.min_cos[2])  # two objects: keeps its own
    assert pooled.min_cos[2] == pytest.approx(cap)
    # Every bar lies between knn's and pooled's.
    assert (pooled.min_cos <= borrowed.min_cos + 1e-6).all()
    assert (borrowed.min_cos <= knn.min_cos + 1e-6).all()
    sure = np.array([0.05, 0.05, 0.05], np.float32)
    sure0, sure2 = sure.copy(), sure.copy()
    sure0[0], sure2[2] = 0.9, 0.9
    new0, new2 = _unit([1, 0.3, 0.1])[0], _unit([0, 0.5, 1])[0]
    assert naming.unnamed_reason(sure0, 0, new0, 0.5, knn) == "below_threshold"
    assert naming.unnamed_reason(sure0, 0, new0, 0.5, borrowed) is None
    assert naming.unnamed_reason(sure2, 2, new2, 0.5, borrowed) == "below_threshold"
    assert naming.unnamed_reason(sure2, 2, new2, 0.5, pooled) is None
    back = naming.OpenSet.from_json(json.loads(json.dumps(borrowed.to_json())), 3, 3)
    assert back.thresholds == "borrowed" and back.bank is not None
    assert naming.unnamed_reason(sure0, 0, new0, 0.5, back) is None
    with pytest.raises(naming.OpenSetError, match="each region's source"):
        naming.fit_open_set(labels, emb, 3, groups=groups, knn=True, borrow=True)


def test_calibration_thresholds_come_from_regions_held_out_of_training() -> None:
    emb = _unit([1, 0.1, 0], [1, -0.1, 0], [0, 1, 0], [0.1, 1, 0])
    cal = _unit([1, 0.5, 0], [1, 0, 0.6], [0.9, 0.2, 0])  # class 0 only: new objects
    own = naming.fit_open_set([0, 0, 1, 1], emb, 3, quantile=0.0)
    fitted = naming.fit_open_set([0, 0, 1, 1], emb, 3, quantile=0.0,
                                 calibration=([0, 0, 0], cal))
    assert fitted.thresholds == "calibration"
    assert np.allclose(fitted.prototypes, own.prototypes)  # prototypes: training regions
    assert fitted.min_cos[0] == pytest.approx(float((cal @ own.prototypes[0]).min()), abs=1e-6)
    assert fitted.min_cos[0] < own.min_cos[0]
    assert fitted.min_cos[1] == pytest.approx(float(own.min_cos[1]))  # no calibration region
    assert np.isinf(fitted.min_cos[2])
    with pytest.raises(naming.OpenSetError, match="not both"):
        naming.fit_open_set([0, 0, 1, 1], emb, 3, groups=["a", "b", "c", "d"],
                            calibration=([0], cal[:1]))
    with pytest.raises(naming.OpenSetError, match="calibration labels"):
        naming.fit_open_set([0, 0, 1, 1], emb, 3, calibration=([0, 0], cal))


def test_conformal_margin_is_the_kth_smallest_score() -> None:
    scores = np.array([0.3, -0.2, 0.1, -0.5, 0.0, 0.2, -0.1, 0.4, -0.3])
    # n = 9: floor(0.1 * 10) = 1, the smallest; floor(0.25 * 10) = 2, the second smallest.
    assert naming.conformal_margin(scores, 0.1) == -0.5
    assert naming.conformal_margin(scores, 0.25) == -0.3
    with pytest.raises(naming.OpenSetError, match="too few"):
        naming.conformal_margin(scores, 0.05)  # 9 < 19 scores: no 5% bound exists
    with pytest.raises(naming.OpenSetError, match="above 0"):
        naming.conformal_margin(scores, 0.0)


def test_conformal_thresholds_shift_own_ones_by_one_margin_set_on_calibration() -> None:
    emb = _unit([1, 0.1, 0], [1, -0.1, 0], [0, 1, 0], [0.1, 1, 0])
    cal = _unit([1, 0.5, 0], [1, 0, 0.6], [0.9, 0.2, 0], [0.2, 1, 0.3])
    own = naming.fit_open_set([0, 0, 1, 1], emb, 3, quantile=0.2)
    fitted = naming.fit_open_set([0, 0, 1, 1], emb, 3, quantile=0.2,
                                 calibration=([0, 0, 0, 1], cal), conformal=True)
    assert fitted.thresholds == "conformal"
    assert np.allclose(fitted.prototypes, own.prototypes)
    below = np.array([cal[i] @ own.prototypes[c] - own.min_cos[c]
                      for i, c in enumerate([0, 0, 0, 1])])
    margin = np.sort(below)[0]  # n = 4, floor(0.2 * 5) = 1
    assert margin < 0
    assert np.allclose(fitted.min_cos[:2], own.min_cos[:2] + margin, atol=1e-6)
    assert np.isinf(fitted.min_cos[2])  # no prototype: still never named
    back = naming.OpenSet.from_json(json.loads(json.dumps(fitted.to_json())), 3, 3)
    assert back.thresholds == "conformal"
    with pytest.raises(naming.OpenSetError, match="need calibration"):
        naming.fit_open_set([0, 0, 1, 1], emb, 3, conformal=True)


def test_conformal_thresholds_keep_the_promised_share_where_per_class_quantiles_do_not() -> None:
    # New objects spread wider than the training ones, and each class has only 6
    # calibration regions: a class's own 5% quantile is then near its lowest calibration
    # cosine and keeps about 6/7 of new regions; the pooled conformal margin keeps >= 95% on
    # average over calibration draws (one draw can fall short: the promise is an expectation).
    rng = np.random.default_rng(0)
    n_classes, dim = 12, 16

    def draw(n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(n_classes), n)
        vecs = np.eye(dim)[labels] + spread * rng.standard_normal((labels.size, dim))
        return labels, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def kept(fit: naming.OpenSet, new_lab: np.ndarray, new: np.ndarray) -> float:
        cos = np.einsum("ij,ij->i", new, fit.prototypes[new_lab])
        return float((cos >= fit.min_cos[new_lab]).mean())

    by_class, pooled = [], []
    for _ in range(8):
        (lab, emb), cal, (new_lab, new) = draw(40, 0.15), draw(6, 0.25), draw(300, 0.25)
        by_class.append(kept(naming.fit_open_set(lab, emb, n_classes, calibration=cal),
                             new_lab, new))
        pooled.append(kept(naming.fit_open_set(lab, emb, n_classes, calibration=cal,
                                               conformal=True), new_lab, new))
    assert np.mean(pooled) >= 0.95
    assert np.mean(by_class) < 0.9


def test_fit_refuses_bad_input() -> None:
    with pytest.raises(naming.OpenSetError, match="labels for embeddings"):
        naming.fit_open_set([0, 1], np.ones((3, 4)), 2)
    with pytest.raises(naming.OpenSetError, match="outside"):
        naming.fit_open_set([0, 2], np.ones((2, 4)), 2)
    with pytest.raises(naming.OpenSetError, match="quantile"):
        naming.fit_open_set([0], np.ones((1, 4)), 2, quantile=1.0)


def test_named_only_when_both_heads_agree_and_the_region_is_close_enough() -> None:
    emb = _unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0])
    fitted = naming.fit_open_set([0, 0, 1, 1], emb, n_classes=3, quantile=0.0)
    sure = np.array([0.9, 0.05, 0.05], np.float32)
    unsure = np.array([0.4, 0.35, 0.25], np.float32)
    like_0 = _unit([1, 0.05, 0])[0]
    assert naming.is_named(sure, 0, like_0, 0.5, fitted)
    assert naming.is_named(sure, 0, like_0, 0.5, None)  # a file without the check
    assert not naming.is_named(unsure, 0, like_0, 0.5, fitted)  # class probability too low
    assert not naming.is_named(unsure, 0, like_0, 0.5, None)
    like_1 = _unit([0.05, 1, 0])[0]
    assert not naming.is_named(sure, 0, like_1, 0.5, fitted)  # the embedding says class 1
    far = _unit([0.6, 0.1, 0.8])[0]  # nearest to class 0, but below its threshold
    assert int(np.argmax(fitted.prototypes @ far)) == 0
    assert not naming.is_named(sure, 0, far, 0.5, fitted)
    third = np.array([0.05, 0.05, 0.9], np.float32)  # a class no training region had
    assert not naming.is_named(third, 2, _unit([0, 0, 1])[0], 0.5, fitted)
    assert not naming.is_named(sure, 0, None, 0.5, fitted)
    # Each case's reason, in the order the rule checks them.
    assert [naming.unnamed_reason(scores, label, vec, 0.5, fitted) for scores, label, vec in (
        (sure, 0, like_0), (unsure, 0, like_0), (third, 2, _unit([0, 0, 1])[0]),
        (sure, 0, like_1), (sure, 0, far))] == [
        None, "class_probability", "no_prototype", "other_prototype", "below_threshold"]
    assert set(naming.REASONS) == {"class_probability", "no_prototype", "other_prototype",
                                   "below_threshold"}


def test_metadata_round_trip_and_bad_shapes() -> None:
    fitted = naming.fit_open_set([0, 1], _unit([1, 0], [0, 1]), n_classes=3)
    data = json.loads(json.dumps(fitted.to_json()))
    back = naming.OpenSet.from_json(data, n_classes=3, dim=2)
    assert np.allclose(back.prototypes, fitted.prototypes, atol=1e-5)
    assert back.regions == (1, 1, 0) and np.isinf(back.min_cos[2])
    with pytest.raises(naming.OpenSetError, match="do not fit"):
        naming.OpenSet.from_json(data, n_classes=4, dim=2)
    with pytest.raises(naming.OpenSetError, match="bad open_set"):
        naming.OpenSet.from_json({"prototypes": []}, n_classes=3, dim=2)
    # A file fitted before thresholds were recorded: its own regions gave them.
    older = {k: v for k, v in data.items() if k != "thresholds"}
    assert naming.OpenSet.from_json(older, n_classes=3, dim=2).thresholds == "own"


def _fixture_training(path: Path, fixtures_dir: Path) -> None:
    """Point a copied model file's recorded training data at the repo's fixture photos."""
    meta = export.read_meta(path)
    export.update_meta(path, training={**meta.training, "data": fixture_sources(fixtures_dir),
                                       "val_fraction": 0.0})


def test_fit_open_set_cli_writes_a_check_the_runtime_and_the_service_use(
        model_path: Path, fixtures_dir: Path, tmp_path: Path, mealtray_ds: CocoDataset,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copyfile(model_path, copy)
    _fixture_training(copy, fixtures_dir)
    shipped = TrayModel(copy).open_set  # since 1.6.2 the shipped files carry the borrowed check
    assert shipped is not None and shipped.thresholds == "borrowed" and shipped.bank is not None
    export.main(["--out", str(copy), "--fit-open-set"])
    regions = json.loads(capsys.readouterr().out)["open_set_regions"]
    model = TrayModel(copy)
    assert model.open_set is not None and model.open_set.quantile == naming.OPEN_SET_QUANTILE
    assert regions["Plate"] > 0 and regions["apple"] > 0
    assert sum(regions.values()) == sum(model.open_set.regions)
    # The weights are untouched: the same items, and on its own training photos the check
    # keeps most of the names the class probability gives.
    plain = TrayModel(model_path)
    before = predict_dataset(plain, mealtray_ds, PostConfig())
    after = predict_dataset(model, mealtray_ds, PostConfig())
    items = [(a, b) for iid in before for a, b in
             zip(before[iid].items, after[iid].items, strict=True)]
    assert items and all(a.box == b.box and a.label == b.label for a, b in items)
    by_probability = [naming.is_named(a.class_scores, a.label_index, a.embedding, 0.5, None)
                      for a, _ in items]
    checked = [model.is_named(b, 0.5) for _, b in items]
    assert not any(c and not p for p, c in zip(by_probability, checked, strict=True))
    assert sum(checked) >= 0.8 * sum(by_probability) > 0
    # Thresholds from the other objects and capture runs: the same prototypes, and on these
    # photos none tighter (not a law: a class could lie closer to its other objects).
    export.main(["--out", str(copy), "--fit-open-set", "--open-set-thresholds", "groups"])
    grouped = TrayModel(copy).open_set
    assert grouped is not None and grouped.thresholds == "groups"
    assert np.allclose(grouped.prototypes, model.open_set.prototypes)
    seen = np.isfinite(model.open_set.min_cos)
    assert (grouped.min_cos[seen] <= model.open_set.min_cos[seen] + 1e-6).all()
    # The regions as the witness: every fitted region kept, and the runtime reads them; the
    # file, which now names otherwise, takes the version given.
    export.main(["--out", str(copy), "--fit-open-set", "--open-set-thresholds", "knn",
                 "--version", "9.9.9-knn"])
    assert TrayModel(copy).meta.version == "9.9.9-knn"
    knn = TrayModel(copy).open_set
    assert knn is not None and knn.thresholds == "knn" and knn.bank is not None
    assert knn.bank.shape == (sum(knn.regions), TrayModel(copy).meta.embedding_dim)
    named = [TrayModel(copy).is_named(b, 0.5) for _, b in items]
    assert not any(c and not p for p, c in zip(by_probability, named, strict=True))
    assert sum(named) > 0
    # Pooled and borrowed keep the same bank through the file, and name every region knn
    # names (their bars are no higher), pooled every one borrowed names.
    wider = []
    for kind in ("borrowed", "pooled"):
        export.main(["--out", str(copy), "--fit-open-set", "--open-set-thresholds", kind])
        check = TrayModel(copy).open_set
        assert check is not None and check.thresholds == kind and check.bank is not None
        assert np.allclose(check.bank, knn.bank) and (check.min_cos <= knn.min_cos + 1e-5).all()
        wider.append([TrayModel(copy).is_named(b, 0.5) for _, b in items])
    assert all(k <= b <= p for k, b, p in zip(named, *wider, strict=True))
    # Calibration thresholds need a file trained with a calibration share.
    with pytest.raises(export.ExportError, match="calibration_fraction"):
        export.main(["--out", str(copy), "--fit-open-set", "--open-set-thresholds",
                     "calibration"])
    export.update_meta(copy, training={**export.read_meta(copy).training,
                                       "calibration_fraction": 0.5})
    trained, calibration = export.recorded_sides(export.read_meta(copy))
    assert any(c.images for c in calibration) and all(t.images for t in trained)
    export.main(["--out", str(copy), "--fit-open-set", "--open-set-thresholds", "calibration"])
    calibrated = TrayModel(copy).open_set
    assert calibrated is not None and calibrated.thresholds == "calibration"
    # The prototypes now come from the photos trained on only, a part of those above.
    assert sum(calibrated.regions) < sum(model.open_set.regions)
    # Conformal: the fixtures' calibration share finds too few regions for a 5% bound, and
    # the CLI says so; with every fixture photo as calibration (plumbing only: these overlap
    # the trained-on ones) the trained-on part's own thresholds all move by one margin.
    with pytest.raises(export.ExportError, match=r"too few for a 0\.05 conformal bound"):
        export.main(["--out", str(copy), "--fit-open-set", "--open-set-thresholds",
                     "conformal"])
    export.main(["--out", str(copy), "--fit-open-set"])
    own = TrayModel(copy).open_set
    export.fit_open_set_file(copy, trained, thresholds="conformal",
                             calibration=[*trained, *calibration])
    conformal = TrayModel(copy).open_set
    assert own is not None and conformal is not None and conformal.thresholds == "conformal"
    assert np.allclose(conformal.prototypes, calibrated.prototypes)
    seen = np.isfinite(own.min_cos)
    shift = conformal.min_cos[seen] - own.min_cos[seen]
    assert np.allclose(shift, shift[0], atol=1e-4) and abs(shift[0]) > 1e-4


def test_a_bad_open_set_entry_makes_the_file_unusable(model_path: Path,
                                                      tmp_path: Path) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copyfile(model_path, copy)
    export.update_meta(copy, open_set={"prototypes": [[1.0]], "min_cos": [0.5],
                                       "regions": [1], "quantile": 0.05})
    with pytest.raises(ModelFileError, match="do not fit"):
        TrayModel(copy)


def test_fit_needs_the_training_split_recorded(model_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copyfile(model_path, copy)
    meta = export.read_meta(copy)
    export.update_meta(copy, training={k: v for k, v in asdict(meta)["training"].items()
                                       if k != "data"})
    with pytest.raises(export.ExportError, match="no training split"):
        export.main(["--out", str(copy), "--fit-open-set"])

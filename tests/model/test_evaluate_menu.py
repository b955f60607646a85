"""model.evaluate_menu: known answers of menu mode on one-hot embeddings, and a seeded run on
real ECUSTFD embeddings from the dev/shipped ONNX model."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.data.importers.ecustfd import import_ecustfd
from model.evaluate_common import EvalConfig
from model.evaluate_menu import MenuSamples, embed_annotations, menu_section
from model.infer.menu_match import MatchConfig
from model.infer.runtime import TrayModel


def _one_hot_samples(foods: int, objects: int, images: int) -> MenuSamples:
    """Embeddings where each food is its own axis: identification is certain."""
    vecs, names, groups = [], [], []
    for f in range(foods):
        for o in range(objects):
            for _ in range(images):
                vecs.append(np.eye(foods, dtype=np.float32)[f])
                names.append(f"food{f}")
                groups.append(f"food{f}-obj{o}")
    return MenuSamples(np.stack(vecs), names, groups)


def test_menu_section_counts_and_certain_case() -> None:
    samples = _one_hot_samples(foods=6, objects=2, images=3)
    cfg = EvalConfig(k_enrol=2, menu_size=4, n_menus=30, seed=1)
    result = menu_section(samples, cfg, MatchConfig())
    # Each menu queries one object (3 images) of each of its 4 dishes: 30 x 4 x 3 = 360.
    assert result["prototype"]["queries"] == 360
    assert result["accuracy"]["mean"] == 1.0 and result["accuracy"]["ci_low"] == 1.0
    assert result["nearest"]["accuracy"]["mean"] == 1.0
    # Every pick is right with cosine 1 to its own axis; no wrong picks to summarise.
    assert result["prototype"]["top_similarity_median"] == {"correct": 1.0, "wrong": None}
    # Similarities (1, 0, 0, 0) prefer the sharpest softmax: the grid's smallest temperature.
    assert result["prototype"]["fitted_temperature"] == pytest.approx(0.005)
    # Too few foods with two objects for menus of 7: a clear error.
    with pytest.raises(ValueError, match="needs 7 foods"):
        menu_section(samples, replace(cfg, menu_size=7), MatchConfig())


def test_menu_examples_come_from_the_enrolment_vectors() -> None:
    """Queries use `embeddings`, dishes `enrolled`: a swapped example axis shows which is read."""
    certain = _one_hot_samples(foods=5, objects=2, images=1)
    rolled = np.roll(certain.embeddings, 1, axis=1)  # every example points at the next food
    cfg = EvalConfig(k_enrol=1, menu_size=5, n_menus=10, seed=0)
    wrong = menu_section(MenuSamples(certain.embeddings, certain.foods, certain.groups, rolled),
                         cfg, MatchConfig())
    assert wrong["accuracy"]["mean"] == 0.0 and wrong["prototype"]["queries"] == 10 * 5
    same = menu_section(MenuSamples(certain.embeddings, certain.foods, certain.groups,
                                    certain.embeddings.copy()), cfg, MatchConfig())
    assert same["accuracy"]["mean"] == 1.0


def test_menu_section_on_real_embeddings(model_path: Path, shared_data: Path) -> None:
    # Two objects each of four foods from the real ECUSTFD set, two photos per object.
    ds = import_ecustfd(shared_data / "images" / "ecustfd")
    names = ds.category_names()
    keep: list[int] = []
    for food in ("apple", "banana", "orange", "mango"):
        objs: dict[str, list[int]] = {}
        for a in ds.annotations:
            im_group = next(i.split_group for i in ds.images if i.id == a.image_id)
            if names[a.category_id] == food and a.object_id and not a.object_id.startswith("mix"):
                objs.setdefault(str(im_group), []).append(a.image_id)
        for ids in sorted(objs.values())[:2]:
            keep.extend(ids[:2])
    samples = embed_annotations(TrayModel(model_path), ds.subset(keep))
    assert len(samples.foods) == 16 and samples.embeddings.shape[1] > 0
    norms = np.linalg.norm(samples.embeddings, axis=1)
    assert norms == pytest.approx(np.ones(16), abs=1e-4)  # enrolment embeddings are unit length
    cfg = EvalConfig(k_enrol=2, menu_size=3, n_menus=40, seed=3)
    first = menu_section(samples, cfg, MatchConfig())
    again = menu_section(samples, cfg, MatchConfig())
    assert first == again  # seeded menus: the same figures twice
    acc = first["accuracy"]
    assert 0.0 <= acc["ci_low"] <= acc["mean"] <= acc["ci_high"] <= 1.0 + 1e-9
    assert first["prototype"]["queries"] == 40 * 3 * 2

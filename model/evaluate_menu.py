"""Menu-mode evaluation: identification among a menu's dishes from a few enrolled examples.

k enrolled examples per dish, menus of m dishes drawn at random (seeded) from held-out
foods; enrolment and query images come from different physical objects; mean and 95% CI
over menus, plus the ECE of the top score and the temperature the queries prefer.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from model import metrics
from model.data.coco import CocoDataset
from model.evaluate_common import EvalConfig, EvaluationError, calibration, fmt, xyxy
from model.infer import portion
from model.infer.images import load_image
from model.infer.menu_match import Dish, MatchConfig, Method, fit_temperature, rank_menu
from model.infer.runtime import TrayModel


@dataclass(frozen=True)
class MenuSamples:
    """Embeddings of annotated food regions with their food and physical object (group).

    `embeddings` are what a query yields (one pass); `enrolled` what the same region gives
    as an enrolled example (TrayModel.embed_enrolment), None to use `embeddings` for both.
    """

    embeddings: np.ndarray
    foods: list[str]
    groups: list[str]
    enrolled: np.ndarray | None = None

    def enrolment(self, idx: np.ndarray) -> np.ndarray:
        """Example vectors of the given samples, as enrolment stores them."""
        return (self.embeddings if self.enrolled is None else self.enrolled)[idx]


@dataclass(frozen=True)
class FoodBoxes:
    """One photo's annotated food boxes (not the coin), loaded for the network."""

    img: Image.Image
    boxes: list[tuple[float, float, float, float]]
    foods: list[str]
    group: str  # the physical object (ECUSTFD joins mix photos to their foods)


def food_boxes(ds: CocoDataset, fit: tuple[int, int]) -> Iterator[FoodBoxes]:
    """Every photo of a set that has an annotated food, reduced at decode to `fit`."""
    names = ds.category_names()
    by_image = ds.annotations_by_image()
    for im in ds.images:
        anns = [a for a in by_image[im.id] if names[a.category_id] != portion.COIN_LABEL]
        if anns:
            yield FoodBoxes(load_image(ds.image_path(im), fit=fit), [xyxy(a) for a in anns],
                            [names[a.category_id] for a in anns],
                            im.split_group or f"image:{im.id}")


def embed_annotations(model: TrayModel, ds: CocoDataset) -> MenuSamples:
    """Embed every annotated food box (not the coin) as a query and as an enrolled example."""
    vecs: list[np.ndarray] = []
    enrolled: list[np.ndarray] = []
    foods: list[str] = []
    groups: list[str] = []
    for photo in food_boxes(ds, model.meta.input_size):
        vecs.extend(model.embed_regions(photo.img, boxes=photo.boxes))
        enrolled.extend(model.embed_enrolment(photo.img, boxes=photo.boxes))
        foods.extend(photo.foods)
        groups.extend(photo.group for _ in photo.foods)
    dim = model.meta.embedding_dim
    return MenuSamples(np.asarray(vecs, np.float32).reshape(-1, dim), foods, groups,
                       np.asarray(enrolled, np.float32).reshape(-1, dim))


def _objects_by_food(samples: MenuSamples) -> dict[str, dict[str, list[int]]]:
    """food -> physical object -> sample indices; only foods with two or more objects."""
    tree: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (food, group) in enumerate(zip(samples.foods, samples.groups, strict=True)):
        tree[food][group].append(i)
    return {f: dict(g) for f, g in sorted(tree.items()) if len(g) >= 2}


def _one_menu(
    samples: MenuSamples,
    tree: dict[str, dict[str, list[int]]],
    rng: np.random.Generator,
    cfg: EvalConfig,
) -> tuple[list[Dish], list[tuple[int, str]]]:
    """Draw m dishes; per dish, one object to query and k examples from its other objects."""
    menu: list[Dish] = []
    queries: list[tuple[int, str]] = []
    for food in rng.choice(sorted(tree), cfg.menu_size, replace=False):
        objects = sorted(tree[food])
        query_obj = objects[int(rng.integers(len(objects)))]
        pool = [i for o in objects if o != query_obj for i in tree[food][o]]
        enrol = rng.choice(pool, min(cfg.k_enrol, len(pool)), replace=False)
        menu.append(Dish(str(food), samples.enrolment(enrol)))
        queries.extend((i, str(food)) for i in tree[food][query_obj])
    return menu, queries


def menu_section(samples: MenuSamples, cfg: EvalConfig, match: MatchConfig) -> dict[str, Any]:
    """Menu-mode identification accuracy (mean, 95% CI over menus) and top-score ECE."""
    tree = _objects_by_food(samples)
    if len(tree) < cfg.menu_size:
        raise EvaluationError(
            f"menu mode needs {cfg.menu_size} foods with 2+ held-out objects, found {len(tree)}"
        )
    out: dict[str, Any] = {"k": cfg.k_enrol, "m": cfg.menu_size, "n_menus": cfg.n_menus,
                           "foods": sorted(tree), "match": asdict(match)}
    methods: tuple[Method, ...] = ("prototype", "nearest")
    for method in methods:
        out[method] = _run_menus(samples, tree, cfg, replace(match, method=method))
    out["accuracy"] = out[match.method]["accuracy"]
    return out


def _run_menus(
    samples: MenuSamples,
    tree: dict[str, dict[str, list[int]]],
    cfg: EvalConfig,
    match: MatchConfig,
) -> dict[str, Any]:
    """Draw the seeded menus, rank every query; accuracy, calibration, fitted temperature."""
    rng = np.random.default_rng(cfg.seed)  # every method sees the same menus
    per_menu, conf, correct = [], [], []
    sims: list[list[float]] = []
    truth: list[int] = []
    for _ in range(cfg.n_menus):
        menu, queries = _one_menu(samples, tree, rng, cfg)
        ids = [d.dish_id for d in menu]
        hits = []
        for i, food in queries:
            ranked = rank_menu(samples.embeddings[i], None, menu, match)
            hits.append(ranked[0].dish_id == food)
            conf.append(ranked[0].probability)
            by_id = {r.dish_id: r.similarity for r in ranked}
            sims.append([float(by_id[d] or 0.0) for d in ids])
            truth.append(ids.index(food))
        per_menu.append(float(np.mean(hits)))
        correct.extend(hits)
    fitted = fit_temperature(sims, truth)
    top_sim = np.array([max(row) for row in sims])
    hit = np.array(correct, dtype=bool)
    return {
        "accuracy": asdict(metrics.mean_ci95(per_menu)),
        "queries": len(correct),
        "calibration": calibration(conf, correct, cfg.ece_bins),
        # In-sample: the temperature these queries prefer, and the ECE it would give.
        "fitted_temperature": fitted,
        "calibration_at_fitted": calibration(_top_softmax(sims, fitted), correct, cfg.ece_bins),
        # Where MatchConfig.min_similarity should sit: best similarity of right vs wrong picks.
        "top_similarity_median": {
            "correct": float(np.median(top_sim[hit])) if hit.any() else None,
            "wrong": float(np.median(top_sim[~hit])) if (~hit).any() else None,
        },
    }


def _top_softmax(sims: Sequence[Sequence[float]], temperature: float) -> list[float]:
    """Top probability of softmax(similarities / temperature) per query."""
    out = []
    for row in sims:
        z = np.exp((np.asarray(row) - max(row)) / temperature)
        out.append(float(z.max() / z.sum()))
    return out


def menu_markdown(menu: dict[str, Any]) -> list[str]:
    """Markdown rows of the menu-mode section."""
    if "not_evaluated" in menu:
        return ["## Menu mode", "", f"Not evaluated: {menu['not_evaluated']}", ""]
    lines = [f"## Menu mode: k={menu['k']} enrolled examples, menus of m={menu['m']}, "
             f"{menu['n_menus']} random menus", "",
             "| similarity | accuracy | 95% CI | queries | ECE of top score "
             "| fitted temperature (ECE at it) |", "|---|---|---|---|---|---|"]
    for method in ("prototype", "nearest"):
        acc = menu[method]["accuracy"]
        lines.append(f"| {method} | {fmt(acc['mean'], True)} | {fmt(acc['ci_low'], True)} - "
                     f"{fmt(acc['ci_high'], True)} | {menu[method]['queries']} | "
                     f"{fmt(menu[method]['calibration']['ece'])} | "
                     f"{menu[method]['fitted_temperature']:.3g} "
                     f"({fmt(menu[method]['calibration_at_fitted']['ece'])}) |")
    cfg = ", ".join(f"{k}={v}" for k, v in menu["match"].items())
    return [*lines, "", f"Foods: {', '.join(menu['foods'])}. Matching: {cfg}; "
            "embedding only (no class-score fallback), as for dishes outside the label set.", ""]

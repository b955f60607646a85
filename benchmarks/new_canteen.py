"""A new canteen's first trays: how many items are named, and how well, after enrolling 0, 1
and 3 corrected trays, on composed compartment trays (model.data.traybed) of real food crops.

Run: nice -n 10 .venv/bin/python benchmarks/new_canteen.py [--shared] [--test-trays 24]
Prints a Markdown table. The menu has 5 dishes (crop labels) with label_index None: the
model has no class for them, so only enrolled examples can name them. A "corrected tray" is
a tray whose detected items a person gave their dishes: each item (matched to the dish served
in its compartment) is enrolled the way the service enrols an analysed item
(serve.services.enrolment.item_mask + measure_region: the photo under the item's polygon),
and test trays are identified by serve.services.menus.CanteenMenu, the service's own menu
hook. Enrolment trays and test trays use disjoint crops (different source photos). Items the
detector finds off the served food (rims, glare) count in "named off food". --shared takes
crops from ../shared/data/images (fixtures otherwise). The trays are synthetic and the
dishes are foods the network was trained on (only their classes are withheld), so these
figures say the code works and how enrolment scales, not what a real kitchen will see.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data import traybed as tb  # noqa: E402
from model.data.compose import FoodCrop  # noqa: E402
from model.infer.menu_match import rank_menu  # noqa: E402
from model.infer.runtime import Item, TrayModel, full_item_mask  # noqa: E402
from model.infer.tray import polygon_mask  # noqa: E402
from serve.core.settings import SHIPPED_MODEL  # noqa: E402
from serve.services.enrolment import item_mask, measure_region  # noqa: E402
from serve.services.menus import CanteenMenu, MenuContext, offline_dish  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
SHARED = REPO.parent / "shared" / "data" / "images"
DISHES = {"fixtures": ("Yogurt", "Plate", "Starter", "orange", "apple"),
          "shared": ("Plate", "Starter", "Dessert", "Bread", "Yogurt")}
ENROL_STEPS = (0, 1, 3)
MIN_OVERLAP = 0.5  # an item is a dish's when this share of its mask lies on that dish's food


@dataclass
class Tray:
    """One composed tray photo, the items the model found and each item's true dish."""

    image: Image.Image
    items: list[Item]
    truth: list[str | None]  # per item: the dish served where it lies, None = off the food


def split_pools(crops: Sequence[FoodCrop], dishes: Sequence[str]
                ) -> tuple[dict[str, list[FoodCrop]], dict[str, list[FoodCrop]]]:
    """Per dish, crops for enrolment trays and for test trays from different source photos
    (one photo only: the same for both, which flatters that dish)."""
    enrol: dict[str, list[FoodCrop]] = {}
    test: dict[str, list[FoodCrop]] = {}
    for dish in dishes:
        by_photo: dict[str, list[FoodCrop]] = defaultdict(list)
        for c in crops:
            if c.label == dish:
                by_photo[c.source.split("#")[0]].append(c)
        photos = sorted(by_photo)
        if not photos:
            raise SystemExit(f"no crops of {dish!r}: choose other --dishes")
        enrol[dish] = [c for p in photos[0::2] for c in by_photo[p]]
        test[dish] = [c for p in (photos[1::2] or photos[:1]) for c in by_photo[p]]
    return enrol, test


def compose(kiosk: tb.Kiosk, pools: dict[str, list[FoodCrop]], seed: int,
            model: TrayModel) -> Tray:
    """A tray with one dish per compartment (random wells), photographed and analysed."""
    rng = np.random.default_rng([seed, 15])
    wells = list(kiosk.art.wells)
    rng.shuffle(wells)
    served = dict(zip(wells, rng.permutation(list(pools)), strict=False))
    # traybed fills one well from a crop list; a dish's own crops keep each well one dish.
    placements = [p for slot, dish in served.items()
                  for p in tb._fill_well(kiosk.art, slot, pools[str(dish)], rng)]
    shot = tb.shoot(kiosk, placements, tb.random_pose(rng, kiosk.size, tb.PoseRange()), rng)
    image = Image.fromarray(shot.image)
    items = [i for i in model.predict([image])[0].items if i.label != "coin"]
    food = {str(dish): shot.food_mask & polygon_mask(shot.polygons[slot], kiosk.size)
            for slot, dish in served.items()}
    return Tray(image, items, [true_dish(full_item_mask(i, kiosk.size), food) for i in items])


def true_dish(mask: np.ndarray, food: dict[str, np.ndarray]) -> str | None:
    """The dish whose served food covers most of the item, if at least MIN_OVERLAP of it."""
    area = max(int(mask.sum()), 1)
    dish, overlap = max(((d, int((mask & m).sum())) for d, m in food.items()),
                        key=lambda t: t[1])
    return dish if overlap / area >= MIN_OVERLAP else None


def enrolled_menu(trays: Sequence[Tray], dishes: Sequence[str], model: TrayModel
                  ) -> tuple[CanteenMenu, dict[str, int]]:
    """The menu after a person corrected these trays: every matched item enrolled."""
    regions: dict[str, list] = {d: [] for d in dishes}
    for tray in trays:
        size = tray.image.size
        for item, dish in zip(tray.items, tray.truth, strict=True):
            if dish is not None:
                mask = item_mask(item.polygon or [], item.box, size)
                regions[dish].append(measure_region(model, tray.image, mask=mask))
    built = [offline_dish(d, f"bench:{d}", d, 100.0, regions[d], label=None) for d in dishes]
    context = MenuContext("bench", "bench", str(model.meta.version),
                          tuple(b[0] for b in built), tuple(b[1] for b in built))
    return CanteenMenu(context), {d: len(r) for d, r in regions.items()}


def score(menu: CanteenMenu, trays: Sequence[Tray]) -> dict[str, float]:
    """Named share, accuracy, precision, naming without evidence, the closed-set top-1."""
    on = named = right = default = closed = off = off_named = 0
    enrolled = {d.dish_id for d in menu.context.dishes if d.enrolled}
    for tray in trays:
        for item, dish in zip(tray.items, tray.truth, strict=True):
            choice = menu.identify(item.embedding, item.class_scores)
            if choice.dish_id is not None and (choice.evidence == "none"
                                               or choice.dish_id not in enrolled):
                default += 1
            if dish is None:
                off += 1
                off_named += choice.dish_id is not None
                continue
            on += 1
            named += choice.dish_id is not None
            right += choice.dish_id == dish
            top = rank_menu(item.embedding, item.class_scores, menu.context.match_dishes)[0]
            closed += top.dish_id == dish
    return {"items": on, "named": named / max(on, 1), "accuracy": right / max(on, 1),
            "precision": right / max(named, 1), "default": default, "closed": closed / max(on, 1),
            "off": off, "off_named": off_named / max(off, 1)}


def main(argv: Sequence[str] | None = None) -> None:
    """Compose the trays, enrol 0/1/3 corrected trays, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", action="store_true", help="crops from ../shared/data/images")
    p.add_argument("--test-trays", type=int, default=24)
    p.add_argument("--per-label", type=int, default=12, help="crops per label (shared)")
    p.add_argument("--dishes", nargs=5, help="five crop labels for the menu")
    p.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    began = time.perf_counter()
    model = TrayModel(a.model)
    dishes = tuple(a.dishes or DISHES["shared" if a.shared else "fixtures"])
    crops = tb.load_crops(SHARED if a.shared else FIXTURES,
                          per_label=a.per_label if a.shared else None, seed=a.seed)
    enrol_pool, test_pool = split_pools(crops, dishes)
    kiosk = tb.make_kiosk(1500 + a.seed)
    enrol_trays = [compose(kiosk, enrol_pool, 10_000 + a.seed * 100 + n, model)
                   for n in range(max(ENROL_STEPS))]
    test_trays = [compose(kiosk, test_pool, a.seed * 100 + n, model) for n in range(a.test_trays)]
    print(f"# New canteen: first trays ({platform.processor() or platform.machine()}, "
          f"{'shared data' if a.shared else 'fixtures'}, model {model.meta.version}, menu "
          f"{', '.join(dishes)} without model classes, {a.test_trays} test trays, "
          f"seed {a.seed})\n")
    print("| corrected trays enrolled | examples per dish | items on food | named | "
          "accuracy | precision of named | named without evidence | closed-set top-1 (old) "
          "| off-food detections named |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in ENROL_STEPS:
        menu, counts = enrolled_menu(enrol_trays[:k], dishes, model)
        s = score(menu, test_trays)
        print(f"| {k} | {'/'.join(str(counts[d]) for d in dishes)} | {s['items']} | "
              f"{100 * s['named']:.1f}% | {100 * s['accuracy']:.1f}% | "
              f"{100 * s['precision']:.1f}% | {s['default']} | {100 * s['closed']:.1f}% | "
              f"{100 * s['off_named']:.0f}% of {s['off']} |")
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

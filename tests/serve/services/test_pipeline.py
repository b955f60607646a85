"""The pipeline's choices, item by item: identity (model or menu), the grams scale priority
and database nutrients. Items are built from the model's real embeddings of fixture photos,
so these checks hold whatever the model detects on a given photo."""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data.importers.ecustfd import read_voc
from model.infer import naming
from model.infer.images import load_image
from model.infer.menu_match import UNIDENTIFIED, MatchConfig
from model.infer.portion import COIN_LABEL
from model.infer.refine import MODEL_MASKS, REFINED_MASKS
from model.infer.runtime import Item, Prediction
from nutrition_db.table import get_food, nutrients_for
from serve.services.analyses import analysis_payload, analysis_row
from serve.services.layout_mode import LayoutOutcome
from serve.services.menus import CanteenMenu, MenuContext, menu_from_file, offline_dish
from serve.services.model_registry import LoadedModel
from serve.services.pipeline import (
    ENROLLED,
    KIOSK,
    REFERENCE,
    SERVING_SPREAD,
    TYPICAL,
    Alternative,
    ImageRequest,
    analyze,
    build_item,
    result_for,
)
from tests.no_food import coin_only_jpeg, empty_tray_jpeg
from tests.serve.conftest import ECUSTFD, MEALTRAY
from tests.serve.services.test_diary import KIMCHI, RICE, SOUP

APPLE, ORANGE = "sr28:09003", "sr28:09200"  # SR28 apples raw with skin; oranges raw


def _food_box(photo: Path) -> list[float]:
    """The annotated food box of an ECUSTFD fixture photo."""
    voc = photo.parent.parent / "Annotations" / (photo.stem + ".xml")
    return next(box for label, box in read_voc(voc)[3] if label != "coin")


def _item(loaded: LoadedModel, photo: Path, label_index: int, grams: float | None = None,
          box: list[float] | None = None, top: float = 0.9, score: float = 0.8) -> Item:
    """An item over `box` (default: the whole photo), with the model's real embedding of it;
    `top` is its class probability, `score` its detection score."""
    img = load_image(photo)
    x0, y0, x1, y1 = box or [0.0, 0.0, float(img.width), float(img.height)]
    n = len(loaded.model.meta.labels)
    scores = np.full(n, (1 - top) / (n - 1), np.float32)
    scores[label_index] = top
    embedding = loaded.model.embed_regions(img, boxes=[box] if box else None)[0]
    return Item(box=(x0, y0, x1, y1),
                label=loaded.model.meta.labels[label_index], label_index=label_index, score=score,
                class_scores=scores, mask=None,
                polygon=[[int(x0), int(y0)], [int(x1), int(y0)], [int(x0), int(y1)]],
                area_px=(x1 - x0) * (y1 - y0), embedding=embedding,
                grams=grams, grams_range=None if grams is None else (grams * 0.8, grams * 1.2))


@pytest.fixture(scope="module")
def menu(loaded_model: LoadedModel, fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> CanteenMenu:
    """Two dishes, each enrolled with one real photo and its food's box."""
    def example(name: str) -> dict[str, object]:
        photo = fixtures_dir / ECUSTFD.format(name=name)
        return {"image": str(photo), "box": _food_box(photo)}

    spec = {"dishes": [
        {"id": "apple", "food_id": APPLE, "serving_g": 180, "examples": [example("apple003T(1)")]},
        {"id": "orange", "food_id": ORANGE, "serving_g": 140,
         "examples": [example("orange002T(1)")]}]}
    path = tmp_path_factory.mktemp("menu") / "menu.json"
    path.write_text(json.dumps(spec))
    return menu_from_file(loaded_model.model, path)


def _label_of(loaded: LoadedModel, food_id: str) -> int:
    ids = list(loaded.model.meta.food_ids)
    return ids.index(food_id) if food_id in ids else 0


def test_menu_identifies_the_enrolled_dish(
    loaded_model: LoadedModel, menu: CanteenMenu, fixtures_dir: Path
) -> None:
    for name, dish, food in (("apple003T(1)", "apple", APPLE), ("orange002T(1)", "orange", ORANGE)):
        photo = fixtures_dir / ECUSTFD.format(name=name)
        item = _item(loaded_model, photo, 0, box=_food_box(photo))
        pred = Prediction(item.box[2], item.box[3], [item])  # type: ignore[arg-type]
        out = build_item(loaded_model.model, pred, item, ImageRequest(load_image(
            fixtures_dir / ECUSTFD.format(name=name)), menu=menu), top_k=5)
        assert (out.identified_by, out.menu_dish_id, out.food_id) == ("menu", dish, food)
        assert {a.dish_id for a in out.alternatives} == {"apple", "orange"}
        # named by its enrolled example; confidence = detection score x dish probability
        assert out.evidence == "embedding" and out.alternatives[0].dish_id == dish
        assert out.confidence == pytest.approx(0.8 * out.alternatives[0].score, abs=1e-3)
        assert out.label == get_food(food).name  # the dish's name (menu.json: the food's)
        assert not out.needs_review
        # No scale on the photo: grams relative to the enrolled example (its box's food).
        assert out.grams is not None and out.grams.source == ENROLLED
        assert out.nutrients == nutrients_for(food, out.grams.value)


@pytest.fixture
def by_probability(loaded_model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    """The loaded model without its open-set check (the shipped file's since 1.6.1): these
    tests' items embed the whole photo, which no training region is near; the check has its
    own test below."""
    monkeypatch.setattr(loaded_model.model, "open_set", None)
    return loaded_model


def test_grams_priority_without_menu(by_probability: LoadedModel, fixtures_dir: Path) -> None:
    loaded_model = by_probability
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    img = load_image(photo)
    label = _label_of(loaded_model, APPLE)
    food_id = loaded_model.model.meta.food_ids[label]
    cases = [("given", 21.0, 140.0, KIOSK), ("coin", 18.0, 140.0, REFERENCE)]
    for scale_source, px_per_cm, grams, expected in cases:
        item = _item(loaded_model, photo, label, grams)
        pred = Prediction(img.width, img.height, [item], px_per_cm, scale_source)
        out = build_item(loaded_model.model, pred, item, ImageRequest(img), top_k=3)
        assert out.grams is not None and (out.grams.source, out.grams.value) == (expected, grams)
        assert out.identified_by == "model" and out.food_id == food_id
    item = _item(loaded_model, photo, label)  # no scale at all: the database's serving
    out = build_item(loaded_model.model, Prediction(img.width, img.height, [item]), item,
                     ImageRequest(img), top_k=3)
    food = get_food(food_id) if food_id else None
    if food_id is None or food is None or not food.serving_g:
        assert out.grams is None and out.nutrients is None
    else:
        assert out.grams is not None and out.grams.source == TYPICAL
        assert out.grams.value == pytest.approx(food.serving_g, abs=0.05)
        assert out.grams.low == pytest.approx(food.serving_g * (1 - SERVING_SPREAD), abs=0.05)
        assert out.nutrients == nutrients_for(food_id, out.grams.value)
    assert [a.score for a in out.alternatives] == sorted(
        [a.score for a in out.alternatives], reverse=True)
    assert out.alternatives[0].label == loaded_model.model.meta.labels[label]


def test_result_keeps_every_food_and_leaves_out_the_coin(
    loaded_model: LoadedModel, fixtures_dir: Path
) -> None:
    """result_for over a prediction of the photo's annotated apple and coin: one food item
    (the coin is the scale, not food) whose grams and nutrients make the totals."""
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    img = load_image(photo)
    voc = photo.parent.parent / "Annotations" / (photo.stem + ".xml")
    coin_box = next(box for label, box in read_voc(voc)[3] if label == COIN_LABEL)
    labels = list(loaded_model.model.meta.labels)
    label = _label_of(loaded_model, APPLE)
    food_id = loaded_model.model.meta.food_ids[label]
    assert food_id is not None, f"the model's class {labels[label]} names no food"
    apple = _item(loaded_model, photo, label, 140.0, box=_food_box(photo))
    coin = _item(loaded_model, photo, labels.index(COIN_LABEL), box=coin_box)
    pred = Prediction(img.width, img.height, [apple, coin], 18.0, "coin")
    result = result_for(loaded_model.model, pred, ImageRequest(img), top_k=3)
    assert [(i.label, i.box) for i in result.items] == [
        (apple.label, [round(v, 1) for v in apple.box])]
    item = result.items[0]
    assert item.grams is not None and (item.grams.value, item.grams.source) == (140.0, REFERENCE)
    assert item.food_id == food_id and item.nutrients == nutrients_for(food_id, 140.0)
    assert result.totals["items_counted"] == 1 and result.totals["grams"] == 140.0
    assert result.totals["nutrients"]["energy_kcal"] == pytest.approx(
        item.nutrients["energy_kcal"])
    assert (result.scale_source, result.px_per_cm) == (REFERENCE, 18.0)


def test_menu_file_never_sizes_against_a_whole_photo(loaded_model: LoadedModel,
                                                      tmp_path: Path) -> None:
    """An example where the model finds no food enrols by the whole image: its embedding
    counts for identification, but its area (the photo's) is no serving's size."""
    Image.new("RGB", (640, 480), (128, 128, 128)).save(tmp_path / "blank.png")
    spec = {"dishes": [{"id": "soup", "food_id": APPLE, "serving_g": 200,
                        "examples": ["blank.png"]}]}
    (tmp_path / "menu.json").write_text(json.dumps(spec))
    dish = menu_from_file(loaded_model.model, tmp_path / "menu.json").context.dishes[0]
    assert dish.enrolled == 1 and dish.area_px == ()


def test_alternative_json_holds_every_field() -> None:
    alt = Alternative("Bread", "fndds:51000100", 0.25, dish_id="d1")
    assert alt.to_dict() == asdict(alt)
    assert set(alt.to_dict()) == {f.name for f in fields(Alternative)}


def _no_evidence_menu() -> CanteenMenu:
    """Five Korean dishes with no enrolled example and no model class (a new canteen)."""
    foods = [RICE, SOUP, KIMCHI, "mfds:D102-082120000-0001", APPLE]
    built = [offline_dish(f"d{n}", food, None, 200.0, [], label=None)
             for n, food in enumerate(foods)]
    return CanteenMenu(MenuContext("m", "offline", "v", tuple(b[0] for b in built),
                                   tuple(b[1] for b in built)))


def test_menu_without_evidence_names_nothing(loaded_model: LoadedModel,
                                             fixtures_dir: Path) -> None:
    """Issue 15: with no enrolment, slot or class, no dish wins by default (was: the first
    dish at 1/5 for every item)."""
    menu = _no_evidence_menu()
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    item = _item(loaded_model, photo, 0, top=0.99, score=0.9)
    out = build_item(loaded_model.model, Prediction(10, 10, [item]), item,
                     ImageRequest(load_image(photo), menu=menu), top_k=3)
    assert (out.label, out.menu_dish_id, out.food_id) == (UNIDENTIFIED, None, None)
    assert out.needs_review and out.evidence == "none" and out.identified_by == "menu"
    assert out.nutrients is None and out.confidence == 0.9  # P(food) = the detection score
    # every dish of the menu to pick from (not cut to top_k), none favoured
    assert [a.dish_id for a in out.alternatives] == [f"d{n}" for n in range(5)]
    assert {a.score for a in out.alternatives} == {0.2}
    assert out.alternatives[0].label == get_food(RICE).name == "쌀밥"
    totals = result_for(loaded_model.model, Prediction(10, 10, [item]),
                        ImageRequest(load_image(photo), menu=menu), top_k=3).totals
    assert totals["items_without_nutrients"] == 1 and totals["incomplete_nutrients"]


def test_model_mode_confidence_is_a_product(by_probability: LoadedModel,
                                            fixtures_dir: Path) -> None:
    """confidence = detection score x class probability, never a constant 1.00."""
    loaded_model = by_probability
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    label = _label_of(loaded_model, APPLE)
    item = _item(loaded_model, photo, label, top=0.9, score=0.7)
    out = build_item(loaded_model.model, Prediction(10, 10, [item]), item,
                     ImageRequest(load_image(photo)), top_k=3)
    assert out.confidence == pytest.approx(0.63, abs=1e-4) and out.detection_score == 0.7
    assert out.label == item.label and out.evidence == "class_scores" and not out.needs_review
    # below the review threshold: still named, but flagged
    low = build_item(loaded_model.model, Prediction(10, 10, [item]), item,
                     ImageRequest(load_image(photo)), top_k=3, review_below=0.64)
    assert low.label == item.label and low.needs_review


def test_model_mode_weak_class_is_unidentified(by_probability: LoadedModel,
                                               fixtures_dir: Path) -> None:
    loaded_model = by_probability
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    label = _label_of(loaded_model, APPLE)
    cut = MatchConfig().min_class_score
    item = _item(loaded_model, photo, label, grams=120.0, top=cut - 0.01, score=0.9)
    out = build_item(loaded_model.model, Prediction(10, 10, [item]), item,
                     ImageRequest(load_image(photo)), top_k=3)
    assert (out.label, out.food_id, out.nutrients) == (UNIDENTIFIED, None, None)
    assert out.needs_review and out.confidence == 0.9
    assert out.grams is not None and out.grams.value == 120.0  # the model's portion estimate
    assert out.alternatives[0].label == item.label  # the top classes to pick from
    named = _item(loaded_model, photo, label, top=cut, score=0.9)
    assert build_item(loaded_model.model, Prediction(10, 10, [named]), named,
                      ImageRequest(load_image(photo)), top_k=3).label == named.label


def test_model_mode_names_only_what_the_open_set_check_passes(
        loaded_model: LoadedModel, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with the open-set check (model.infer.naming): a sure class whose embedding is
    far from every example of it is unidentified; near its examples, it is named."""
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    label = _label_of(loaded_model, APPLE)
    item = _item(loaded_model, photo, label, top=0.9, score=0.8)
    model = loaded_model.model
    n = len(model.meta.labels)

    def named_with(examples: np.ndarray) -> str:
        monkeypatch.setattr(model, "open_set", naming.fit_open_set([label] * len(examples),
                                                                   examples, n))
        return build_item(model, Prediction(10, 10, [item]), item,
                          ImageRequest(load_image(photo)), top_k=3).label

    assert named_with(np.stack([item.embedding, item.embedding])) == item.label
    assert named_with(np.stack([-item.embedding, -item.embedding])) == UNIDENTIFIED


class _WaitingModel:
    """A model whose run finishes only once the layout work has started: analyze() must
    start the layout's own work before (not after) the model runs."""

    def __init__(self, started: threading.Event, real: LoadedModel) -> None:
        self.started, self.meta = started, real.model.meta

    def predict(self, images: list[Image.Image], **_: object) -> list[Prediction]:
        assert self.started.wait(timeout=10), "the layout work did not run alongside the model"
        return [Prediction(im.width, im.height, []) for im in images]


class _RecordingLayout:
    """A layout hook that records where its work ran and hands it to split."""

    def __init__(self, started: threading.Event) -> None:
        self.started, self.thread = started, ""

    def measure(self, image: Image.Image) -> str:
        self.thread = threading.current_thread().name
        self.started.set()
        return "measured"

    def split(self, model: object, pred: Prediction, request: ImageRequest, foods: list[Item],
              top_k: int, review_below: float, measured: object) -> LayoutOutcome:
        assert measured == "measured"
        return LayoutOutcome("registered", [], foods)


def test_layout_work_runs_while_the_model_runs(loaded_model: LoadedModel) -> None:
    started = threading.Event()
    layout = _RecordingLayout(started)
    model = _WaitingModel(started, loaded_model)
    results, _ = analyze(model, [ImageRequest(Image.new("RGB", (64, 48)), layout=layout)])  # type: ignore[arg-type]
    assert results[0].layout == "registered"
    assert layout.thread.startswith("layout")


def test_no_food_found_on_real_photos_without_food(loaded_model: LoadedModel,
                                                    fixtures_dir: Path) -> None:
    """The shipped model on an empty tray and on a coin alone finds no food: 0 items, zero
    totals, and the result says so; on a photo with food it does not."""
    photos = {"empty tray": empty_tray_jpeg(), "coin alone": coin_only_jpeg(fixtures_dir),
              "apple": (fixtures_dir / ECUSTFD.format(name="apple003T(1)")).read_bytes()}
    fit = loaded_model.model.meta.input_size
    results, _ = analyze(loaded_model.model,
                         [ImageRequest(load_image(b, fit=fit)) for b in photos.values()])
    found = dict(zip(photos, results, strict=True))
    for name in ("empty tray", "coin alone"):
        result = found[name]
        assert result.items == [] and result.no_food_found, (name, result.items)
        assert result.totals["grams"] == 0 and result.totals["items_counted"] == 0
    # The coin was found (it gives the scale), and still no food: a coin is not food.
    assert (found["coin alone"].scale_source, found["empty tray"].scale_source) == (
        REFERENCE, None)
    assert found["apple"].items and not found["apple"].no_food_found


def test_a_coin_is_never_food(loaded_model: LoadedModel, fixtures_dir: Path) -> None:
    """result_for over a prediction of the coin alone: no item, no_food_found, the scale."""
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    img = load_image(photo)
    voc = photo.parent.parent / "Annotations" / (photo.stem + ".xml")
    coin_box = next(box for label, box in read_voc(voc)[3] if label == COIN_LABEL)
    coin = _item(loaded_model, photo, list(loaded_model.model.meta.labels).index(COIN_LABEL),
                 box=coin_box)
    pred = Prediction(img.width, img.height, [coin], 18.0, "coin")
    result = result_for(loaded_model.model, pred, ImageRequest(img), top_k=3)
    assert result.items == [] and result.no_food_found
    assert (result.scale_source, result.px_per_cm) == (REFERENCE, 18.0)


def test_refined_masks_follow_the_food_and_the_result_says_so(loaded_model: LoadedModel,
                                                              fixtures_dir: Path) -> None:
    """refine_masks on the canteen tray 2770, decoded as the service decodes it: the same
    items in the same boxes, the salad bowl's mask cut to the salad (a smaller area and
    another outline), the rest as the model drew them; the result, its stored row and its
    answer say which masks they hold (default: the model's)."""
    model = loaded_model.model
    img = load_image(fixtures_dir / MEALTRAY.format(n=2770), fit=model.meta.input_size)
    (plain,), _ = analyze(model, [ImageRequest(img)])
    (refined,), _ = analyze(model, [ImageRequest(img)], refine_masks=True)
    assert (plain.masks, refined.masks) == (MODEL_MASKS, REFINED_MASKS) == ("model", "refined")
    assert [(i.label_index, i.box) for i in refined.items] == [
        (i.label_index, i.box) for i in plain.items]
    changed = [(p, r) for p, r in zip(plain.items, refined.items, strict=True)
               if r.area_px != p.area_px]
    assert changed, "refinement changed no item's area on a tray of plates and bowls"
    for p, r in changed:  # the food inside its container: smaller than the model's mask
        # (the salad: 1.5.0 48,063 -> 32,372 px; 1.6.0, whose masks follow the food,
        # 36,780 -> 32,376)
        assert 0 < r.area_px < 0.95 * p.area_px and r.polygon != p.polygon, (p.label, r.area_px)
    salad = model.meta.labels.index("Starter")
    assert salad in {p.label_index for p, _ in changed}
    for result, masks in ((plain, "model"), (refined, "refined")):
        row = analysis_row(result, image_sha256=None)
        assert row.masks == masks and analysis_payload(row)["masks"] == masks
        row.masks = None  # analysed before the column existed: the model's masks
        assert analysis_payload(row)["masks"] == "model"

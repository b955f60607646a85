"""Menu matching: hand-computed rankings on small vectors (arithmetic in the comments)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from model.infer.menu_match import (
    Dish,
    MatchConfig,
    MenuMatchError,
    dish_similarity,
    fit_temperature,
    rank_menu,
)

# Unit vectors in 3-d: cos(E1, E2) = 0, cos(E1, D) = 1/sqrt(2).
E1 = np.array([1.0, 0.0, 0.0])
E2 = np.array([0.0, 1.0, 0.0])
E3 = np.array([0.0, 0.0, 1.0])
D12 = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)


def test_nearest_and_prototype_similarity_by_hand() -> None:
    dish = Dish("kimchi", np.stack([E1, E2]))
    q = np.array([0.8, 0.6, 0.0])  # unit: 0.64 + 0.36 = 1
    # nearest: max(q.E1, q.E2) = max(0.8, 0.6) = 0.8
    assert dish_similarity(q, dish, "nearest") == pytest.approx(0.8)
    # prototype: mean (0.5, 0.5, 0), norm 1/sqrt(2); cos = (0.4 + 0.3) / (1/sqrt(2)) = 0.7 sqrt(2)
    assert dish_similarity(q, dish, "prototype") == pytest.approx(0.7 * math.sqrt(2))
    assert dish_similarity(q, Dish("empty"), "nearest") is None


def test_examples_are_normalised_on_enrolment() -> None:
    dish = Dish("rice", np.array([[3.0, 4.0, 0.0]]))
    assert dish.examples[0].tolist() == pytest.approx([0.6, 0.8, 0.0])


def test_embedding_ranking_softmax_by_hand() -> None:
    menu = [Dish("a", E1[None]), Dish("b", E2[None]), Dish("c", E3[None])]
    cfg = MatchConfig(temperature=0.5, method="nearest")
    ranked = rank_menu(D12 * 3.0, None, menu, cfg)  # the query is normalised too
    # Similarities 1/sqrt(2), 1/sqrt(2), 0 -> logits 1.4142, 1.4142, 0 at T = 0.5.
    # softmax: e^1.4142 = 4.1133; P(a) = P(b) = 4.1133 / (2 * 4.1133 + 1) = 0.44581, P(c) = 0.10838
    assert [m.dish_id for m in ranked] == ["a", "b", "c"]  # ties keep menu order
    assert ranked[0].probability == pytest.approx(0.44581, abs=1e-5)
    assert ranked[2].probability == pytest.approx(0.10838, abs=1e-5)
    assert ranked[2].similarity == pytest.approx(0.0)
    assert all(m.source == "embedding" for m in ranked)
    assert sum(m.probability for m in ranked) == pytest.approx(1.0)


def test_unenrolled_dish_falls_back_to_class_scores() -> None:
    # "soup" has no examples but names model label 2; "rice" is enrolled (label 0).
    menu = [Dish("rice", E1[None], label_index=0), Dish("soup", label_index=2)]
    scores = np.array([0.2, 0.5, 0.3])  # label 1 is not on the menu: renormalise 0.2 and 0.3
    cfg = MatchConfig(min_similarity=0.5, gate_width=0.1)
    # Query E2: similarity to rice 0 -> gate sigmoid((0 - 0.5) / 0.1) = sigmoid(-5) = 0.0066929.
    # P_emb = (1, 0); P_cls = (0.2/0.5, 0.3/0.5) = (0.4, 0.6).
    # P(soup) = (1 - 0.0066929) * 0.6 = 0.59598; P(rice) = 0.0066929 + 0.99331 * 0.4 = 0.40402.
    ranked = rank_menu(E2, scores, menu, cfg)
    assert [m.dish_id for m in ranked] == ["soup", "rice"]
    assert ranked[0].probability == pytest.approx(0.59598, abs=1e-5)
    assert ranked[0].source == "class_scores" and ranked[0].similarity is None
    # Query E1 matches rice exactly: gate sigmoid(5) = 0.99331, rice wins.
    # P(rice) = 0.99331 + 0.0066929 * 0.4 = 0.99599.
    strong = rank_menu(E1, scores, menu, cfg)
    assert strong[0].dish_id == "rice"
    assert strong[0].probability == pytest.approx(0.99599, abs=1e-5)


def test_weak_match_defers_to_class_scores() -> None:
    # Every dish is enrolled, but the query matches none well (cos 0.1 vs min 0.5), so the
    # class scores decide: dish "b" (label 1, score 0.9) beats the closer dish "a".
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.0, 1.0, 0.0])
    q = np.array([0.1, 0.0, math.sqrt(1 - 0.01)])
    menu = [Dish("a", a[None], label_index=0), Dish("b", b[None], label_index=1)]
    ranked = rank_menu(q, np.array([0.1, 0.9]), menu)
    assert ranked[0].dish_id == "b"
    assert ranked[0].source == "embedding"  # it is enrolled; its similarity is still shown
    assert ranked[1].similarity == pytest.approx(0.1, abs=1e-6)


def test_gate_follows_the_best_enrolled_match_not_the_worst() -> None:
    # Two enrolled dishes with different similarities, plus class scores that disagree with
    # the embedding: the gate must use the best similarity (0.9), not the worst (0.3).
    menu = [Dish("a", E1[None], label_index=0), Dish("b", E2[None], label_index=1)]
    q = np.array([0.9, 0.3, math.sqrt(1 - 0.81 - 0.09)])  # unit: cos to a 0.9, to b 0.3
    scores = np.array([0.1, 0.9])  # the model's classes favour b
    # Defaults: T 0.1, min_similarity 0.5, gate_width 0.05.
    # gate = sigmoid((0.9 - 0.5) / 0.05) = sigmoid(8) = 0.99966465
    # P_emb = softmax(9, 3) = (1 / (1 + e^-6), ...) = (0.99752738, 0.00247262); P_cls = (0.1, 0.9)
    # P(a) = 0.99966465 * 0.99752738 + 0.00033535 * 0.1 = 0.99722639
    # (With the worst similarity the gate would be sigmoid(-4) = 0.01798621 and
    # P(a) = 0.01798621 * 0.99752738 + 0.98201379 * 0.1 = 0.11614312: b would win.)
    ranked = rank_menu(q, scores, menu)
    assert [m.dish_id for m in ranked] == ["a", "b"]
    assert ranked[0].probability == pytest.approx(0.99722639, abs=1e-6)
    assert ranked[1].probability == pytest.approx(1 - 0.99722639, abs=1e-6)
    assert [m.similarity for m in ranked] == pytest.approx([0.9, 0.3], abs=1e-6)


def test_no_evidence_is_uniform() -> None:
    ranked = rank_menu(None, None, [Dish("x"), Dish("y"), Dish("z")])
    assert [m.probability for m in ranked] == pytest.approx([1 / 3] * 3)
    assert {m.source for m in ranked} == {"none"}


def test_bad_inputs_are_refused_clearly() -> None:
    with pytest.raises(MenuMatchError, match="empty"):
        rank_menu(E1, None, [])
    with pytest.raises(MenuMatchError, match="duplicate"):
        rank_menu(E1, None, [Dish("a", E1[None]), Dish("a", E2[None])])
    with pytest.raises(MenuMatchError, match="dimensions"):
        rank_menu(np.ones(4), None, [Dish("a", E1[None])])
    with pytest.raises(MenuMatchError, match="non-zero"):
        rank_menu(np.zeros(3), None, [Dish("a", E1[None])])
    with pytest.raises(MenuMatchError, match="label_index"):
        rank_menu(None, np.array([1.0]), [Dish("a", label_index=3)])
    with pytest.raises(MenuMatchError, match="finite"):
        Dish("nan", np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(MenuMatchError, match="temperature"):
        MatchConfig(temperature=0.0)


def test_fit_temperature_by_hand() -> None:
    # One query, menu of two, similarities (1, 0), true dish 0:
    # NLL(T) = log(1 + e^(-1/T)), falling as T shrinks -> the smallest grid value wins.
    assert fit_temperature([[1.0, 0.0]], [0], grid=[0.1, 0.5, 1.0]) == 0.1
    # Two queries that disagree: (1, 0) true 0 and (1, 0) true 1. NLL(T) =
    # log(1 + e^(-1/T)) + log(1 + e^(1/T)); at T=0.1: 4.5e-5 + 10.00005 = 10.0001;
    # at T=1: 0.3133 + 1.3133 = 1.6265; at T=10: 0.6444 + 0.7444 = 1.3888 -> T=10 wins.
    assert fit_temperature([[1.0, 0.0], [1.0, 0.0]], [0, 1], grid=[0.1, 1.0, 10.0]) == 10.0
    with pytest.raises(MenuMatchError, match="outside"):
        fit_temperature([[1.0, 0.0]], [2])

"""model.infer.menu_match.decide: a dish is named only from its own evidence."""
from __future__ import annotations

import numpy as np
import pytest

from model.infer.menu_match import Dish, MatchConfig, MenuMatchError, decide, rank_menu

E1 = np.array([[1.0, 0.0, 0.0]])
E2 = np.array([[0.0, 1.0, 0.0]])


def _scores(n: int, **at: float) -> np.ndarray:
    """Class probabilities over n classes with the given indices set (rest shares what is left)."""
    out = np.zeros(n)
    for key, value in at.items():
        out[int(key[1:])] = value
    rest = 1.0 - out.sum()
    out[out == 0] = rest / max(int((out == 0).sum()), 1)
    return out


def test_strong_enrolled_match_is_named_by_embedding() -> None:
    menu = [Dish("rice", E1), Dish("soup", E2)]
    emb = np.array([0.9, 0.1, 0.0])  # cosine 0.994 to rice, 0.110 to soup
    ranking = rank_menu(emb, None, menu)
    d = decide(ranking, None, menu)
    assert d.dish_id == "rice" and d.evidence == "embedding"
    assert d.probability == pytest.approx(ranking[0].probability)


def test_weak_match_without_class_evidence_is_unidentified() -> None:
    menu = [Dish("rice", E1), Dish("soup", E2)]
    emb = np.array([0.3, 0.2, 0.93])  # cosine 0.30 and 0.20: below min_similarity 0.5
    ranking = rank_menu(emb, None, menu)
    assert ranking[0].dish_id == "rice"  # the closed-set ranking still orders them
    d = decide(ranking, None, menu)
    assert d.dish_id is None and d.evidence == "none" and d.probability == 0.0


def test_no_evidence_at_all_never_names_the_first_dish() -> None:
    menu = [Dish("a"), Dish("b"), Dish("c"), Dish("d"), Dish("e")]
    ranking = rank_menu(None, None, menu)
    assert decide(ranking, None, menu).dish_id is None


def test_class_evidence_counts_unrenormalised() -> None:
    # The model is sure it sees class 3 (not on the menu); the only labelled dish is class 0
    # at 0.02. Renormalised over the menu that is 100 %, but it is no evidence.
    menu = [Dish("bread", label_index=0), Dish("kimchi")]
    scores = _scores(5, c3=0.9, c0=0.02)
    ranking = rank_menu(None, scores, menu)
    assert ranking[0].dish_id == "bread" and ranking[0].probability == pytest.approx(1.0)
    assert decide(ranking, scores, menu).dish_id is None
    sure = _scores(5, c0=0.8)
    d = decide(rank_menu(None, sure, menu), sure, menu)
    assert d.dish_id == "bread" and d.evidence == "class_scores"


def test_min_class_score_is_a_setting() -> None:
    menu = [Dish("bread", label_index=0)]
    scores = _scores(4, c0=0.4)
    ranking = rank_menu(None, scores, menu)
    assert decide(ranking, scores, menu).dish_id is None
    assert decide(ranking, scores, menu, MatchConfig(min_class_score=0.3)).dish_id == "bread"
    with pytest.raises(MenuMatchError, match="min_class_score"):
        MatchConfig(min_class_score=1.5)


def test_decide_needs_a_ranking() -> None:
    with pytest.raises(MenuMatchError, match="nothing ranked"):
        decide([], None, [Dish("a")])

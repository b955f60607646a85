"""Group-preserving, seeded splits."""
from __future__ import annotations

import pytest

from model.data.coco import CocoDataset
from model.data.splits import label_strata, split_groups, train_val_split, training_split


def test_split_groups_is_deterministic_and_near_the_fraction() -> None:
    groups = {f"g{i}": 5 for i in range(40)}
    a = split_groups(groups, 0.2, seed=3)
    assert a == split_groups(groups, 0.2, seed=3)
    assert a != split_groups(groups, 0.2, seed=4)
    train, val = a
    assert len(val) == 8 and set(train).isdisjoint(val) and len(train) + len(val) == 40


def test_split_groups_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_groups({"a": 1, "b": 1}, 1.0, 0)
    with pytest.raises(ValueError, match="at least 2 split groups"):
        split_groups({"a": 1}, 0.2, 0)


def test_a_stratum_with_one_group_stays_in_train(ecustfd_ds: CocoDataset) -> None:
    strata = label_strata(ecustfd_ds)
    # Ties break by name: the lemon003 group is one lemon + orange image.
    assert strata == {"apple003": "apple", "doughnut006": "doughnut", "egg007": "egg",
                      "lemon003": "lemon"}
    train, val = train_val_split(ecustfd_ds, val_fraction=0.2, strata=strata)
    assert val.images == [] and len(train.images) == len(ecustfd_ds.images)
    one = {g: "all" for g in strata}
    train, val = train_val_split(ecustfd_ds, val_fraction=0.2, strata=one)
    assert val.images and train.images
    assert {i.split_group for i in train.images}.isdisjoint({i.split_group for i in val.images})
    assert train_val_split(ecustfd_ds, 0.2, strata=one)[1].images == val.images



@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_training_split_is_stratified_else_plain(mealtray_ds: CocoDataset,
                                                 fraction: float) -> None:
    """The one rule training and evaluation share, on the full fixture set and one run."""
    one_run = mealtray_ds.subset([i.id for i in mealtray_ds.images
                                  if i.split_group == mealtray_ds.images[0].split_group])
    for ds in (mealtray_ds, one_run):
        strat = train_val_split(ds, fraction, 0, strata=label_strata(ds))
        expected = strat if strat[1].images else train_val_split(ds, fraction, 0)
        train, val = training_split(ds, fraction, 0)
        assert ([i.id for i in train.images], [i.id for i in val.images]) == (
            [i.id for i in expected[0].images], [i.id for i in expected[1].images])
        assert len(train.images) + len(val.images) == len(ds.images)

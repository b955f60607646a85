"""The model's data layer: the canonical COCO format, importers, splits, composer.

numpy / Pillow / OpenCV only (no torch), so the evaluator and notebooks can use it.
"""
from model.data.coco import (
    Annotation,
    Category,
    CocoDataset,
    CocoFormatError,
    ImageRecord,
    load,
    save,
    validate,
)
from model.data.splits import label_strata, train_val_split

__all__ = [
    "Annotation",
    "Category",
    "CocoDataset",
    "CocoFormatError",
    "ImageRecord",
    "label_strata",
    "load",
    "save",
    "train_val_split",
    "validate",
]

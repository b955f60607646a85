"""Incremental construction of a CocoDataset, shared by all importers and the composer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from model.data.coco import (
    Annotation,
    Category,
    CocoDataset,
    ImageRecord,
    MaskSource,
    Segmentation,
    validate,
)


class DatasetBuilder:
    """Hands out consecutive ids and keeps categories unique by name."""

    def __init__(self, image_root: Path | None, source: str, categories: list[str] | None = None):
        """Start an empty dataset; `categories` fixes the first ids in order."""
        self.ds = CocoDataset(image_root=image_root, info={"source": source})
        self.source = source
        self._cat_ids: dict[str, int] = {}
        for name in categories or []:
            self.category(name)

    def category(self, name: str, food_id: str | None = None) -> int:
        """Id of the category with this name, created (ids 1, 2, ...) when new."""
        if name not in self._cat_ids:
            cid = len(self.ds.categories) + 1
            self.ds.categories.append(Category(id=cid, name=name, food_id=food_id))
            self._cat_ids[name] = cid
        return self._cat_ids[name]

    def image(self, file_name: str, width: int, height: int, **extra: Any) -> int:
        """Add an image record; extra keys are ImageRecord's optional fields."""
        iid = len(self.ds.images) + 1
        rec = ImageRecord(id=iid, file_name=file_name, width=width, height=height,
                          source=self.source, **extra)
        self.ds.images.append(rec)
        return iid

    def annotation(
        self,
        image_id: int,
        category: str,
        bbox: list[float],
        *,
        segmentation: Segmentation | None = None,
        mask_source: MaskSource | None = None,
        area: float | None = None,
        grams: float | None = None,
        object_id: str | None = None,
    ) -> int:
        """Add an annotation; area defaults to the box area when no mask area is given."""
        aid = len(self.ds.annotations) + 1
        self.ds.annotations.append(
            Annotation(
                id=aid,
                image_id=image_id,
                category_id=self.category(category),
                bbox=[float(v) for v in bbox],
                area=float(area if area is not None else bbox[2] * bbox[3]),
                segmentation=segmentation,
                mask_source=mask_source,
                grams=grams,
                object_id=object_id,
            )
        )
        return aid

    def build(self) -> CocoDataset:
        """The finished, validated dataset."""
        validate(self.ds)
        return self.ds

"""Corrected analyses as a training data set: the model's COCO-extended format in a zip.

`POST /v1/exports` answers with `annotations.json` (model.data.coco, validated before it is
sent) and `images/<sha256>.<ext>`, the stored photos. One image per analysis; one
annotation per item: box, the model's polygon as the mask (`mask_source` "model"), the
(corrected) food as the category, the (corrected) grams, and for a corrected item the
model's estimate as `original`. Items the user left alone are exported as the model saw them
(no `original`). The archive is built in a temporary file whose photos may total at most
TRAYLENS_MAX_EXPORT_MB (413 `export_too_large` otherwise: narrow the dates).
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from model.data.coco import (
    Annotation,
    Category,
    CocoDataset,
    CocoFormatError,
    ImageRecord,
    to_dict,
    validate,
)
from nutrition_db import label_map
from serve.core.auth import Principal
from serve.core.errors import ApiError, forbidden
from serve.core.storage import ImageStore
from serve.db.access import load_canteen
from serve.db.base import as_utc
from serve.db.tables.analyses import Analysis, AnalysisItem, Provenance
from serve.db.tables.core import Role, StoredImage, User
from serve.db.tables.pairs import MealPair

FORMATS = ("coco",)
ANNOTATIONS = "annotations.json"
IMAGE_DIR = "images"
SOURCE = "traylens-service"
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
              "image/heic": ".heic", "image/heif": ".heif"}


@dataclass(frozen=True)
class ExportQuery:
    """Which analyses: one canteen (admins: any or all), a capture-time range, corrected only."""

    canteen_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    corrected_only: bool = True


@dataclass(frozen=True)
class ExportFile:
    """A finished archive on disk (the caller deletes it once sent)."""

    path: Path
    images: int
    annotations: int
    skipped: dict[str, int]


def _canteen_scope(session: Session, principal: Principal, canteen_id: str | None) -> str | None:
    """The canteen to export: admins any or all (None); kiosk keys only their own; apps none."""
    if not principal.is_admin and principal.role is not Role.KIOSK:
        raise forbidden("exports need an admin key or the canteen's kiosk key")
    if canteen_id is not None:
        return load_canteen(session, principal, canteen_id).id
    return None if principal.is_admin else principal.canteen_id


def select_analyses(session: Session, principal: Principal, query: ExportQuery
                    ) -> list[Analysis]:
    """The analyses an export holds, oldest first."""
    canteen = _canteen_scope(session, principal, query.canteen_id)
    start, end = (None if t is None else as_utc(t) for t in (query.start, query.end))
    if start is not None and end is not None and end <= start:
        raise ApiError(422, "invalid_range", "end must be after start")
    # People who keep their trays out of canteen statistics keep them out of training sets.
    stmt = select(Analysis).where(~exists().where(
        User.id == Analysis.user_id, User.consent_canteen_statistics.is_(False)))
    stmt = stmt.where(Analysis.image_sha256.is_not(None))  # manual meals have no photo
    if canteen is not None:
        stmt = stmt.where(Analysis.canteen_id == canteen)
    if start is not None:
        stmt = stmt.where(Analysis.captured_at >= start)
    if end is not None:
        stmt = stmt.where(Analysis.captured_at < end)
    if query.corrected_only:
        stmt = stmt.where(exists().where(AnalysisItem.analysis_id == Analysis.id,
                                         AnalysisItem.provenance == Provenance.USER.value))
    return list(session.scalars(stmt.order_by(Analysis.captured_at, Analysis.id)))


def _pair_ids(session: Session, analyses: Sequence[Analysis]) -> dict[str, str]:
    """analysis id -> its before/after pair's id."""
    ids = [a.id for a in analyses]
    out: dict[str, str] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk:chunk + 500]
        rows = session.execute(select(MealPair.id, MealPair.before_analysis_id,
                                      MealPair.after_analysis_id)
                               .where(or_(MealPair.before_analysis_id.in_(part),
                                          MealPair.after_analysis_id.in_(part))))
        for pair_id, before, after in rows:
            out[before] = pair_id
            if after is not None:
                out[after] = pair_id
    return out


class _Categories:
    """One category per food (per model label when an item has no food).

    A food of the model's label map takes that label's name, so
    model.data.ops.remap_to_label_map maps it straight back to the model's class.
    """

    def __init__(self) -> None:
        lm = label_map()
        self._label_of: dict[str, str] = {}
        for label in lm.labels:
            fid = lm.food_id(label)
            if fid is not None:
                self._label_of.setdefault(fid, label)
        self.items: list[Category] = []
        self._by_key: dict[str, int] = {}
        self._names: set[str] = set()

    def id_for(self, item: AnalysisItem) -> int:
        """The category id of an item's (corrected) food."""
        key = f"food:{item.food_id}" if item.food_id else f"label:{item.label}"
        if key in self._by_key:
            return self._by_key[key]
        if item.food_id is None:
            name = item.label
        else:
            name = self._label_of.get(item.food_id) or item.name_en or item.name_ko or item.food_id
        if name in self._names:
            name = f"{name} ({item.food_id or item.label})"
        cat = Category(id=len(self.items) + 1, name=name, food_id=item.food_id)
        self.items.append(cat)
        self._names.add(name)
        self._by_key[key] = cat.id
        return cat.id


def _bbox(box: Sequence[float], width: int, height: int) -> list[float] | None:
    """[x0, y0, x1, y1] clipped to the image -> COCO [x, y, w, h]; None when empty (an item
    a user added without a box has none)."""
    if len(box) != 4:
        return None
    x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x1, y1 = min(float(width), float(box[2])), min(float(height), float(box[3]))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _annotation(item: AnalysisItem, ann_id: int, image_id: int, category_id: int,
                width: int, height: int) -> Annotation | None:
    """One item as an annotation; None when its box is empty."""
    bbox = _bbox(item.box, width, height)
    if bbox is None:
        return None
    polygon = [float(v) for point in (item.polygon or []) for v in point[:2]]
    has_mask = len(polygon) >= 6
    area = float(item.area_px) if item.area_px else bbox[2] * bbox[3]
    return Annotation(
        id=ann_id, image_id=image_id, category_id=category_id, bbox=bbox, area=area,
        segmentation=[polygon] if has_mask else None,
        mask_source="model" if has_mask else None,
        grams=float(item.grams) if item.grams else None,
        object_id=f"item:{item.id}",
        original=item.original if item.provenance == Provenance.USER.value else None,
    )


def build_dataset(session: Session, analyses: Sequence[Analysis], store: ImageStore,
                  ) -> tuple[CocoDataset, dict[str, str], dict[str, int]]:
    """(dataset, file name -> photo sha256, skipped counts) for these analyses.

    An analysis whose photo was purged (retention) is skipped; so is an item whose user set
    its grams to 0 (no food there) or whose box is empty.
    """
    pairs = _pair_ids(session, analyses)
    shas = {a.image_sha256 for a in analyses if a.image_sha256 is not None}
    types = dict(session.execute(select(StoredImage.sha256, StoredImage.content_type)
                                 .where(StoredImage.sha256.in_(shas))).all()) if shas else {}
    cats = _Categories()
    ds = CocoDataset(image_root=Path("."))
    files: dict[str, str] = {}
    skipped = {"photo_purged": 0, "zero_grams": 0, "empty_box": 0}
    corrected = 0
    for analysis in analyses:
        sha, width, height = analysis.image_sha256, analysis.image_width, analysis.image_height
        if sha is None or width is None or height is None:
            continue  # a manual meal: no photo (select_analyses leaves these out)
        if not store.exists(sha):
            skipped["photo_purged"] += 1
            continue
        ext = EXTENSIONS.get(types.get(sha, ""), ".jpg")
        name = f"{IMAGE_DIR}/{sha}{ext}"
        files[name] = sha
        image_id = len(ds.images) + 1
        pair = pairs.get(analysis.id)
        ds.images.append(ImageRecord(
            id=image_id, file_name=name, width=width,
            height=height, px_per_cm=analysis.px_per_cm or None,
            meal_state=analysis.meal_state,  # type: ignore[arg-type]
            pair_id=pair,
            # A split never cuts a tray: before and after share their pair; else the photo.
            split_group=f"pair:{pair}" if pair else f"photo:{sha[:16]}",
            source=SOURCE,
            dish={"analysis_id": analysis.id, "model_version": analysis.model_version,
                  "canteen_id": analysis.canteen_id},
        ))
        for item in analysis.items:
            if item.provenance == Provenance.USER.value and item.grams is not None \
                    and item.grams <= 0:
                skipped["zero_grams"] += 1
                continue
            ann = _annotation(item, len(ds.annotations) + 1, image_id, cats.id_for(item),
                              width, height)
            if ann is None:
                skipped["empty_box"] += 1
                continue
            corrected += ann.original is not None
            ds.annotations.append(ann)
    used = {a.category_id for a in ds.annotations}
    ds.categories = [c for c in cats.items if c.id in used]
    ds.info = {"exported_by": SOURCE, "exported_at": datetime.now(UTC).isoformat(),
               "images": len(ds.images), "annotations": len(ds.annotations),
               "corrected_annotations": corrected, "skipped": skipped}
    return ds, files, skipped


def write_export(session: Session, principal: Principal, store: ImageStore,
                 query: ExportQuery, *, max_bytes: int, fmt: str = "coco",
                 tmp_dir: Path | None = None) -> ExportFile:
    """Select, validate and zip an export into a temporary file (the caller deletes it)."""
    if fmt not in FORMATS:
        raise ApiError(422, "unsupported_format", f"format must be one of {list(FORMATS)}")
    analyses = select_analyses(session, principal, query)
    ds, files, skipped = build_dataset(session, analyses, store)
    ds.info["query"] = {"canteen_id": query.canteen_id,
                        "start": query.start.isoformat() if query.start else None,
                        "end": query.end.isoformat() if query.end else None,
                        "corrected_only": query.corrected_only}
    try:
        validate(ds)
    except CocoFormatError as exc:  # a stored row the format cannot hold: a bug to see
        raise ApiError(500, "export_invalid", f"the export failed validation: {exc}") from exc
    shas = sorted(set(files.values()))
    total = sum(session.scalars(select(StoredImage.size_bytes)
                                .where(StoredImage.sha256.in_(shas)))) if shas else 0
    if total > max_bytes:
        raise ApiError(413, "export_too_large",
                       f"the photos total {total / 1048576:.1f} MB, more than the "
                       f"{max_bytes / 1048576:.0f} MB an export may hold: narrow start/end")
    fd, name = tempfile.mkstemp(prefix="traylens-export-", suffix=".zip", dir=tmp_dir)
    path = Path(name)
    try:
        with open(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            body = json.dumps(to_dict(ds), ensure_ascii=False, separators=(",", ":"))
            zf.writestr(ANNOTATIONS, body, compress_type=zipfile.ZIP_DEFLATED)
            for file_name, sha in files.items():  # photos are compressed already
                data = store.get(sha)
                if data is None:  # purged since build_dataset looked: a row without a file
                    raise ApiError(409, "photo_purged", f"photo {sha} was purged meanwhile")
                zf.writestr(file_name, data, compress_type=zipfile.ZIP_STORED)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ExportFile(path, len(ds.images), len(ds.annotations), skipped)


def export_filename(query: ExportQuery) -> str:
    """The archive's download name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"traylens-export-{query.canteen_id or 'all'}-{stamp}.zip"


def export_summary(export: ExportFile) -> dict[str, Any]:
    """Counts for the response headers."""
    return {"images": export.images, "annotations": export.annotations, **export.skipped}

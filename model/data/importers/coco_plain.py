"""Plain COCO JSON (from CVAT, pycocotools, Label Studio exports) -> the canonical format.

Unknown keys are dropped, empty segmentations become None, and masks without a
`mask_source` are taken as ground truth ("gt"): a plain COCO file is human-made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from model.data.coco import CocoDataset, CocoFormatError, from_dict
from model.data.importers.common import SourceFormatError, read_json_object

SOURCE = "coco"


def _annotation(a: Any) -> Any:
    """Fill in what plain COCO leaves implicit."""
    if not isinstance(a, dict):
        return a
    a = dict(a)
    if a.get("segmentation") in ([], {}, None):
        a["segmentation"] = None
        a.pop("mask_source", None)
    elif a.get("mask_source") is None:
        a["mask_source"] = "gt"
    if "area" not in a and isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4:
        a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
    return a


def import_coco(json_path: str | Path, image_root: str | Path | None = None) -> CocoDataset:
    """Import a plain COCO file; images are relative to image_root (default: its folder)."""
    path = Path(json_path)
    data = read_json_object(path, "annotations", "COCO")
    data["annotations"] = [_annotation(a) for a in data["annotations"]]
    root = Path(image_root) if image_root is not None else path.parent
    data["image_root"] = str(root.resolve())
    info: dict[str, Any] = data["info"] if isinstance(data.get("info"), dict) else {}
    data["info"] = {**info, "source": SOURCE, "imported_from": path.name}
    for im in data.get("images") or []:
        if isinstance(im, dict):
            im.setdefault("source", SOURCE)
    try:
        return from_dict(data, allow_unknown_keys=True)
    except CocoFormatError as exc:
        raise SourceFormatError(f"{path}: {exc}") from exc

"""The label map: every label the vision model can output, in class order, to a food id."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nutrition_db.paths import LABEL_MAP_PATH

KINDS = ("course", "food", "reference")


class LabelMapError(ValueError):
    """The label map file breaks a rule (see validate_label_map)."""


@dataclass(frozen=True)
class LabelEntry:
    """One model label: its food (None for non-food references), kind and why it maps so."""

    label: str
    food_id: str | None
    kind: str
    note: str


@dataclass(frozen=True)
class LabelMap:
    """Ordered label entries; index i is the model's class i."""

    entries: tuple[LabelEntry, ...]

    @property
    def labels(self) -> list[str]:
        """Labels in class order."""
        return [e.label for e in self.entries]

    def entry(self, label: str) -> LabelEntry:
        """The entry of a label; KeyError naming the known labels when absent."""
        for e in self.entries:
            if e.label == label:
                return e
        raise KeyError(f"unknown label {label!r}; known: {', '.join(self.labels)}")

    def food_id(self, label: str) -> str | None:
        """The food id a label maps to (None for reference objects such as the coin)."""
        return self.entry(label).food_id

    def to_json(self) -> str:
        """Compact JSON of the entries, e.g. for ONNX metadata."""
        return json.dumps([e.__dict__ for e in self.entries], ensure_ascii=False)


def parse_label_map(data: Any) -> LabelMap:
    """A LabelMap from the decoded JSON document, checking its structure."""
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise LabelMapError("label map must be an object with a 'labels' list")
    entries = []
    for i, item in enumerate(data["labels"]):
        if not isinstance(item, dict) or set(item) != {"label", "food_id", "kind", "note"}:
            raise LabelMapError(f"entry {i} must have exactly label, food_id, kind, note")
        entries.append(LabelEntry(item["label"], item["food_id"], item["kind"], item["note"]))
    return LabelMap(tuple(entries))


def validate_label_map(lm: LabelMap, known_ids: set[str] | None = None) -> None:
    """Raises LabelMapError unless labels are unique non-empty strings, kinds are known,
    foods and courses map to existing food ids and references map to none."""
    if known_ids is None:
        from nutrition_db.table import table  # the table loads only when validating ids
        known_ids = set(table().foods)
    seen: set[str] = set()
    for e in lm.entries:
        if not isinstance(e.label, str) or not e.label.strip() or e.label in seen:
            raise LabelMapError(f"labels must be unique non-empty strings: {e.label!r}")
        seen.add(e.label)
        if e.kind not in KINDS:
            raise LabelMapError(f"{e.label}: kind {e.kind!r} not in {KINDS}")
        if not isinstance(e.note, str) or not e.note.strip():
            raise LabelMapError(f"{e.label}: a note must say why it maps so")
        if e.kind == "reference" and e.food_id is not None:
            raise LabelMapError(f"{e.label}: a reference object maps to no food")
        if e.kind != "reference" and e.food_id not in known_ids:
            raise LabelMapError(f"{e.label}: food id {e.food_id!r} is not in the table")


@lru_cache(maxsize=4)
def read_label_map(path: Path = LABEL_MAP_PATH) -> LabelMap:
    """Reads and parses a label map file (structure only; see validate_label_map)."""
    return parse_label_map(json.loads(path.read_text(encoding="utf-8")))


def label_map() -> LabelMap:
    """The shipped label map (the default model's classes, in order)."""
    return read_label_map()

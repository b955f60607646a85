"""Names only when sure: when the model's own evidence is enough to name a found food region.

The class head always spreads probability over the model's classes (they sum to 1), so on a
food it never saw it still gives one of them a high probability: trained without ECUSTFD, the
default recipe named 98% of the ECUSTFD foods it found with a wrong class at p >= 0.5
(docs/MODEL_CARD.md, leave-one-source-out). The region's embedding is a second, independent
witness. An open-set check, fitted on the training split only (`fit_open_set`) and carried in
the ONNX metadata (`ModelMeta.open_set`), asks of a region named `c` at p >= min_class_score:

- its embedding's nearest class prototype is `c`'s (the two heads agree), and
- its cosine to that prototype is at least `c`'s threshold: the OPEN_SET_QUANTILE quantile
  of the cosines of `c`'s own training regions (so about 95% of those pass); or, fitted with
  thresholds "groups", of each region's cosine to the prototype of `c`'s other objects and
  capture runs (so about 95% of a new object's regions would pass, were it like those); or,
  with "calibration", of the cosines of regions of photos held out of training; or, with
  "conformal", its own-region threshold less one margin for every class, the split-conformal
  OPEN_SET_QUANTILE bound of how far calibration regions fall below their class's own
  threshold (`conformal_margin`), so that at most that share of new regions like the
  calibration ones fall below, whatever the class's count of calibration regions.

With thresholds "knn" the witness is the training regions themselves rather than one mean
per class (a broad class such as a canteen's "Plate" is many looks, not one): the file keeps
the fitted regions' embeddings (`OpenSet.bank`), and a region named `c` must have a region
of `c` as its nearest bank region, at a cosine no lower than `c`'s threshold: the
OPEN_SET_QUANTILE quantile of each of `c`'s regions' cosine to its nearest region of `c`'s
other objects and capture runs (`nearest_other_group_cosines`), so that about 95% of a new
object's regions would pass, were it like those. "pooled" caps every class's knn threshold
at its data source's pooled quantile of the same cosines; "borrowed" caps only the classes
whose training regions all come from one object or capture run, which have no other to
measure a new one by. Both keep the knn bank.

A class with no training region has no prototype and is never named. A file without
`open_set` (1.4.0 and older) names by class probability alone, as before. `is_named` is the
one rule: the service (serve.services.pipeline) and the evaluator (model.evaluate) call it.
"""
from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# The share of a class's own training regions allowed below its threshold: fixed before any
# measurement (2026-12-05), never tuned to a held-out or left-out set.
OPEN_SET_QUANTILE = 0.05
# Regions per class the fit uses at most (seeded choice): bounds the export's extra pass.
OPEN_SET_MAX_REGIONS = 60
# Where a class's threshold cosines come from (OpenSet.thresholds).
THRESHOLDS = ("own", "groups", "calibration", "conformal", "knn", "pooled", "borrowed")
# The thresholds whose check keeps the fitted regions as its witness (OpenSet.bank).
BANK_THRESHOLDS = ("knn", "pooled", "borrowed")


class OpenSetError(ValueError):
    """Metadata or fit input that cannot give an open-set check."""


@dataclass(frozen=True)
class OpenSet:
    """Per class: L2-normalised prototype (a zero row: no training region) and min cosine."""

    prototypes: np.ndarray  # (C, E) float32
    min_cos: np.ndarray  # (C,) float32; +inf where the class has no prototype
    regions: tuple[int, ...]  # training regions each class's fit used
    quantile: float
    # Where the thresholds' cosines come from (THRESHOLDS): "own", a class's regions against
    # the prototype they made; "groups", against the prototype of its other objects and
    # capture runs; "calibration", regions of photos held out of training; "conformal", own
    # thresholds less one margin set on those regions; "knn", each region against its
    # nearest region of the class's other objects and capture runs (fit_open_set);
    # "pooled" and "borrowed", knn capped by source (fit_open_set).
    thresholds: str = "own"
    # BANK_THRESHOLDS only: the fitted regions' embeddings (N, E) and classes (N,), the witness.
    bank: np.ndarray | None = None
    bank_labels: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """The metadata entry (ModelMeta.open_set): plain lists, rounded to 5 decimals; a
        bank as little-endian float16, base64 (a few MB of text as JSON numbers)."""
        out = {"quantile": self.quantile, "regions": list(self.regions),
               "thresholds": self.thresholds,
               "min_cos": [None if not np.isfinite(v) else round(float(v), 5)
                           for v in self.min_cos],
               "prototypes": [[round(float(x), 5) for x in row] for row in self.prototypes]}
        if self.bank is not None and self.bank_labels is not None:
            raw = np.ascontiguousarray(self.bank, dtype="<f2").tobytes()
            out["bank"] = base64.b64encode(raw).decode("ascii")
            out["bank_labels"] = [int(c) for c in self.bank_labels]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], n_classes: int, dim: int) -> OpenSet:
        """Parse ModelMeta.open_set; OpenSetError when it does not fit the model's shapes."""
        try:
            protos = np.asarray(data["prototypes"], dtype=np.float32)
            min_cos = np.asarray([np.inf if v is None else v for v in data["min_cos"]],
                                 dtype=np.float32)
            regions = tuple(int(n) for n in data["regions"])
            quantile = float(data["quantile"])
            thresholds = str(data.get("thresholds", "own"))  # files fitted before 2026-12-05
        except (KeyError, TypeError, ValueError) as exc:
            raise OpenSetError(f"bad open_set metadata: {exc}") from exc
        if thresholds not in THRESHOLDS:
            raise OpenSetError(f"open_set thresholds must be one of {THRESHOLDS}, "
                               f"got {thresholds!r}")
        if protos.shape != (n_classes, dim) or min_cos.shape != (n_classes,) \
                or len(regions) != n_classes:
            raise OpenSetError(f"open_set shapes {protos.shape}, {min_cos.shape}, "
                               f"{len(regions)} do not fit {n_classes} classes x {dim}")
        bank, bank_labels = _bank_from_json(data, n_classes, dim) \
            if thresholds in BANK_THRESHOLDS else (None, None)
        return cls(protos, min_cos, regions, quantile, thresholds, bank, bank_labels)


def _bank_from_json(data: dict[str, Any], n_classes: int,
                    dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A BANK_THRESHOLDS entry's bank: (N, dim) float32 embeddings and (N,) classes."""
    try:
        raw = base64.b64decode(str(data["bank"]), validate=True)
        labels = np.asarray(data["bank_labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise OpenSetError(f"bad open_set bank: {exc}") from exc
    if labels.ndim != 1 or len(raw) != labels.size * dim * 2 \
            or (labels.size and (labels.min() < 0 or labels.max() >= n_classes)):
        raise OpenSetError(f"open_set bank of {len(raw)} bytes and {labels.size} labels does "
                           f"not fit {n_classes} classes x {dim}")
    bank = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(labels.size, dim)
    return bank, labels


def fit_open_set(labels: Sequence[int], embeddings: np.ndarray, n_classes: int,
                 quantile: float = OPEN_SET_QUANTILE,
                 groups: Sequence[str] | None = None,
                 calibration: tuple[Sequence[int], np.ndarray] | None = None,
                 conformal: bool = False, knn: bool = False,
                 sources: Sequence[str] | None = None, borrow: bool = False) -> OpenSet:
    """Prototypes and thresholds from training regions: `labels[i]` is the annotated class of
    the region whose (L2-normalised) embedding is `embeddings[i]`.

    A class's prototype is the normalised mean of its regions. Its threshold is the
    `quantile` of its regions' cosines to that prototype; with `groups` (each region's
    object or capture run), of their cosines to the prototype of the class's *other* groups
    (`held_out_cosines`), so that every cosine is one of a new object's. A class whose
    regions all come from one group keeps its own-region threshold. With `calibration`
    (labels and embeddings of regions of photos the model did not train on), of those
    regions' cosines to the prototype; a class without calibration regions keeps its own.
    With `conformal` (and `calibration`), every class keeps its own-region threshold less
    one margin: `conformal_margin` of the calibration regions' cosines less their class's
    own threshold (regions of a class without a prototype do not count). With `knn` (and
    `groups`), the regions themselves are kept as the witness and each class's threshold is
    the `quantile` of `nearest_other_group_cosines`; a class of one region is never named.
    With `sources` too (each region's data source), each knn threshold is capped at the
    `quantile` of those cosines over every region of its class's source ("pooled"): a class
    seen on a few alike objects is held to no stricter bar than its source's classes show.
    With `borrow` too, only the classes whose regions all come from one group are capped
    ("borrowed"): they have no other object to say how near a new one comes.
    """
    if groups is not None and calibration is not None:
        raise OpenSetError("thresholds come from groups or from calibration, not both")
    if knn and groups is None:
        raise OpenSetError("knn thresholds need each region's group")
    if conformal and calibration is None:
        raise OpenSetError("conformal thresholds need calibration regions")
    if sources is not None and not knn:
        raise OpenSetError("pooled thresholds (sources) are a knn fit's")
    if borrow and sources is None:
        raise OpenSetError("borrowed thresholds need each region's source")
    emb = np.asarray(embeddings, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64)
    if emb.ndim != 2 or emb.shape[0] != lab.size:
        raise OpenSetError(f"{lab.size} labels for embeddings of shape {emb.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise OpenSetError(f"labels outside 0..{n_classes - 1}")
    if not 0.0 <= quantile < 1.0:
        raise OpenSetError("quantile must be in [0, 1)")
    grp = None if groups is None else np.asarray(list(groups), dtype=object)
    if grp is not None and grp.size != lab.size:
        raise OpenSetError(f"{grp.size} groups for {lab.size} regions")
    cal = None if calibration is None else (np.asarray(calibration[0], dtype=np.int64),
                                            np.asarray(calibration[1], dtype=np.float64))
    if cal is not None and (cal[1].ndim != 2 or cal[1].shape[0] != cal[0].size
                            or cal[1].shape[1] != emb.shape[1]):
        raise OpenSetError(f"{cal[0].size} calibration labels for embeddings of shape "
                           f"{cal[1].shape}")
    protos = np.zeros((n_classes, emb.shape[1]), np.float64)
    min_cos = np.full(n_classes, np.inf)
    counts = np.bincount(lab, minlength=n_classes)
    for c in np.flatnonzero(counts):
        proto = _prototype(emb[lab == c])
        if proto is None:
            continue
        protos[c] = proto
        if knn:  # thresholds from the regions themselves (_knn_open_set)
            continue
        cosines = emb[lab == c] @ proto
        if grp is not None and len(set(grp[lab == c])) > 1:
            cosines = held_out_cosines(emb[lab == c], grp[lab == c])
        if cal is not None and not conformal and (cal[0] == c).any():
            cosines = cal[1][cal[0] == c] @ proto
        min_cos[c] = float(np.quantile(cosines, quantile))
    if knn and grp is not None:
        src = None if sources is None else np.asarray(list(sources), dtype=object)
        if src is not None and src.size != lab.size:
            raise OpenSetError(f"{src.size} sources for {lab.size} regions")
        return _knn_open_set(lab, emb, grp, protos, counts, quantile, src, borrow)
    if cal is not None and conformal:
        seen = np.isfinite(min_cos[cal[0]])
        below = (np.einsum("ij,ij->i", cal[1][seen], protos[cal[0][seen]])
                 - min_cos[cal[0][seen]])
        min_cos[np.isfinite(min_cos)] += conformal_margin(below, quantile)
    kind = ("groups" if grp is not None else "own" if cal is None
            else "conformal" if conformal else "calibration")
    return OpenSet(protos.astype(np.float32), min_cos.astype(np.float32),
                   tuple(int(n) for n in counts), quantile, kind)


def _knn_open_set(lab: np.ndarray, emb: np.ndarray, grp: np.ndarray, protos: np.ndarray,
                  counts: np.ndarray, quantile: float, src: np.ndarray | None,
                  borrow: bool = False) -> OpenSet:
    """The "knn" check: the regions as the bank, thresholds from their nearest regions of
    other groups; with `src`, capped per source ("pooled"), with `borrow` only for classes
    of one group ("borrowed"; fit_open_set)."""
    min_cos = np.full(len(counts), np.inf)
    nearest: dict[int, np.ndarray] = {}
    for c in map(int, np.flatnonzero(counts > 1)):
        nearest[c] = nearest_other_group_cosines(emb[lab == c], grp[lab == c])
        min_cos[c] = float(np.quantile(nearest[c], quantile))
    if src is not None:  # a class's source: where most of its regions come from
        source_of = {c: Counter(src[lab == c].tolist()).most_common(1)[0][0] for c in nearest}
        for name in set(source_of.values()):
            members = [c for c in nearest if source_of[c] == name]
            cap = float(np.quantile(np.concatenate([nearest[c] for c in members]), quantile))
            capped = [c for c in members if not borrow or len(set(grp[lab == c])) == 1]
            min_cos[capped] = np.minimum(min_cos[capped], cap)
    kind = "knn" if src is None else "borrowed" if borrow else "pooled"
    return OpenSet(protos.astype(np.float32), min_cos.astype(np.float32),
                   tuple(int(n) for n in counts), quantile, kind, emb.astype(np.float32),
                   lab.copy())


def nearest_other_group_cosines(embeddings: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each region's cosine to its nearest region of another group; where all share one
    group, to its nearest other region (at least two regions)."""
    cos = embeddings @ embeddings.T
    other = groups[:, None] != groups[None, :]
    if not other.any():
        other = ~np.eye(len(embeddings), dtype=bool)
    return np.where(other, cos, -np.inf).max(axis=1)


def conformal_margin(scores: np.ndarray, quantile: float) -> float:
    """The split-conformal lower bound of `scores`: their k-th smallest, k = floor(quantile
    (n + 1)). A new score exchangeable with them falls below it with probability at most
    `quantile` (Vovk et al. 2005; Angelopoulos & Bates 2021), which a plain sample quantile
    of few scores does not promise. OpenSetError when there are too few for any bound."""
    k = int(np.floor(quantile * (np.size(scores) + 1)))
    if k < 1:
        raise OpenSetError(f"{np.size(scores)} calibration regions are too few for a "
                           f"{quantile} conformal bound (at least {int(np.ceil(1 / quantile)) - 1})"
                           if quantile > 0 else "a conformal bound needs a quantile above 0")
    return float(np.sort(np.asarray(scores, np.float64))[k - 1])


def held_out_cosines(embeddings: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each region's cosine to the prototype of the regions outside its group (at least two
    groups); a group whose others average to zero gives -1 (no evidence of likeness)."""
    out = np.empty(len(embeddings), np.float64)
    for g in set(groups.tolist()):
        mine = groups == g
        proto = _prototype(embeddings[~mine])
        out[mine] = -1.0 if proto is None else embeddings[mine] @ proto
    return out


def _prototype(embeddings: np.ndarray) -> np.ndarray | None:
    """The normalised mean of some embeddings; None when it is zero."""
    mean = embeddings.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return None if norm == 0 else mean / norm


# Why a found region is left unidentified (unnamed_reason), in the order the rule checks.
REASONS = ("class_probability", "no_prototype", "other_prototype", "below_threshold")


def unnamed_reason(class_scores: np.ndarray, label_index: int, embedding: np.ndarray | None,
                   min_class_score: float, open_set: OpenSet | None) -> str | None:
    """None when the found region may carry its class name, else the first of REASONS that
    stops it: class probability under min_class_score; its class has no prototype (or the
    region no embedding); another class's prototype is nearer (with a bank: the nearest
    bank region is another class's); the cosine to its own (with a bank: its nearest region
    of its class) is under the class's threshold."""
    if float(class_scores[label_index]) < min_class_score:
        return "class_probability"
    if open_set is None:
        return None
    if embedding is None or not np.isfinite(open_set.min_cos[label_index]):
        return "no_prototype"
    vec = np.asarray(embedding, np.float32)
    if open_set.bank is not None and open_set.bank_labels is not None:  # BANK_THRESHOLDS
        cos = open_set.bank @ vec
        if int(open_set.bank_labels[int(np.argmax(cos))]) != label_index:
            return "other_prototype"
        own = float(cos[open_set.bank_labels == label_index].max())
    else:
        cos = open_set.prototypes @ vec
        if int(np.argmax(cos)) != label_index:
            return "other_prototype"
        own = float(cos[label_index])
    if own < float(open_set.min_cos[label_index]):
        return "below_threshold"
    return None


def is_named(class_scores: np.ndarray, label_index: int, embedding: np.ndarray | None,
             min_class_score: float, open_set: OpenSet | None) -> bool:
    """Whether a found region may carry its class name (else it is "unidentified")."""
    return unnamed_reason(class_scores, label_index, embedding, min_class_score,
                          open_set) is None

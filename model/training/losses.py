"""Training losses: focal heatmap, class softmax, GIoU box, mask BCE + dice, embedding.

`Criterion` sums them with the config's `loss_weights`; its class prototypes are trained
with the network and saved in the checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.network import STRIDE

EMBED_SCALE = 10.0  # cosine-softmax temperature for the embedding's class prototypes


class Criterion(nn.Module):
    """Focal heatmap + GIoU box + mask BCE/dice + cosine-prototype embedding losses."""

    def __init__(self, num_classes: int, embed_dim: int, weights: dict[str, float],
                 composed_regions: bool = False) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.1)
        self.weights = weights
        # Samples marked real=0 (composed trays) also teach objectness and boxes, not only
        # the mask (compose supervise "regions"; decoupled heads).
        self.composed_regions = composed_regions

    def forward(
        self, raw: dict[str, torch.Tensor], t: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        item_raw, item_t = raw, t  # what the item losses see
        if "real" in t and not bool(t["real"].bool().all()):
            # Samples marked real=0 (composed trays that teach masks, or regions, only) leave
            # the other losses; each item loss is 0 on an empty batch.
            keep = t["real"].bool()
            item_raw = {k: v[keep] for k, v in raw.items()}
            item_t = {k: v[keep] for k, v in t.items()}
        region_raw, region_t = (raw, t) if self.composed_regions else (item_raw, item_t)
        if "cls_logits" in raw:
            objectness = region_t["heat"].amax(dim=1, keepdim=True)
            losses = {"heat": focal_loss(region_raw["heat_logits"], objectness),
                      "cls": class_loss(item_raw["cls_logits"], item_t["heat"])}
        else:
            losses = {"heat": focal_loss(item_raw["heat_logits"], item_t["heat"])}
        # Computed and summed in this order: reruns on one CPU stay bit-for-bit equal.
        losses |= {
            "box": giou_loss(region_raw["ltrb"], region_t["reg_box"], region_t["reg_w"]),
            "mask": mask_loss(raw["mask_logits"], t["mask"]),
            "embed": self.embed_loss(item_raw["embedding"], item_t),
        }
        total = torch.zeros((), device=raw["ltrb"].device)
        for k, v in losses.items():
            total = total + self.weights.get(k, 1.0) * v
        losses["total"] = total
        return losses

    def embed_loss(self, emb: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """Item embeddings pooled as at inference must land on their class prototype."""
        pooled, valid = pool_objects(emb, t["boxes"], t["labels"], t["mask"])
        if not valid.any():
            return emb.sum() * 0.0
        vec = F.normalize(pooled[valid], dim=1)
        logits = EMBED_SCALE * vec @ F.normalize(self.prototypes, dim=1).T
        return F.cross_entropy(logits, t["labels"][valid])


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss over Gaussian heatmaps."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_w = torch.pow(1 - target, 4)
    pos_loss = torch.log(pred) * torch.pow(1 - pred, 2) * pos
    neg_loss = torch.log(1 - pred) * torch.pow(pred, 2) * neg_w * (1 - pos)
    n = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def class_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the class softmax near item centres, weighted by the Gaussian."""
    weight, target = heat.max(dim=1)
    near = weight > 0.3
    if not near.any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float().permute(0, 2, 3, 1)[near], target[near], reduction="none")
    return (ce * weight[near]).sum() / weight[near].sum()


def cell_centres(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres of the stride-8 grid cells."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * STRIDE
    return ys.view(1, h, 1).expand(1, h, w), xs.view(1, 1, w).expand(1, h, w)


def giou_loss(ltrb: torch.Tensor, boxes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Generalised IoU loss at cells near object centres, weighted by the Gaussian."""
    cy, cx = cell_centres(ltrb.shape[2], ltrb.shape[3], ltrb.device)
    ltrb = ltrb.float()
    pred = torch.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], 1)
    m = weight > 0
    if not m.any():
        return ltrb.sum() * 0.0
    p = pred.permute(0, 2, 3, 1)[m]
    g = boxes.permute(0, 2, 3, 1)[m]
    w = weight[m]
    inter_w = (torch.min(p[:, 2], g[:, 2]) - torch.max(p[:, 0], g[:, 0])).clamp(min=0)
    inter_h = (torch.min(p[:, 3], g[:, 3]) - torch.max(p[:, 1], g[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_p + area_g - inter + 1e-6
    hull = (torch.max(p[:, 2], g[:, 2]) - torch.min(p[:, 0], g[:, 0])) * (
        torch.max(p[:, 3], g[:, 3]) - torch.min(p[:, 1], g[:, 1])) + 1e-6
    giou = inter / union - (hull - union) / hull
    return ((1 - giou) * w).sum() / w.sum()


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft dice on the stride-8 foreground map."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return bce + dice


def pool_objects(
    emb: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-object mean embedding over its box cells weighted by the foreground map."""
    _, _, h, w = emb.shape
    cy, cx = cell_centres(h, w, emb.device)
    b = boxes.float()
    inside = ((cx[None] >= b[..., 0, None, None]) & (cx[None] <= b[..., 2, None, None])
              & (cy[None] >= b[..., 1, None, None]) & (cy[None] <= b[..., 3, None, None]))
    weights = inside.float() * (mask.float() + 1e-3)  # +eps: boxes with no foreground still pool
    total = weights.sum(dim=(2, 3))
    pooled = torch.einsum("bnhw,behw->bne", weights, emb.float()) / total.clamp(min=1e-6)[..., None]
    valid = (labels >= 0) & (total > 0)
    return pooled, valid

"""Output drift of a network run against its float run: tensor errors, DB-map IoU, classifier agreement.

All functions take the float network's output first (the reference) and the simulated one second, both
float arrays of one shape, and compute in float64.
"""

from __future__ import annotations

import enum
import math

import numpy as np

from wccsim.metrics import error_stats

__all__ = ["OutputKind", "output_kind", "tensor_error", "binary_iou", "class_agreement", "probabilities",
           "output_drift", "empty_output"]


class OutputKind(enum.Enum):
    """What a graph output is, judged from the float output: a per-pixel probability map (N, 1, H, W)
    in [0, 1] (e.g. the DB map of PP-OCR det), class scores (N, classes), or anything else."""
    PROB_MAP = "prob_map"
    CLASSES = "classes"
    OTHER = "other"


def output_kind(ref: np.ndarray) -> OutputKind:
    """Classify a float graph output (see `OutputKind`)."""
    ref = np.asarray(ref)
    if ref.ndim == 4 and ref.shape[1] == 1 and ref.size and 0.0 <= ref.min() and ref.max() <= 1.0:
        return OutputKind.PROB_MAP
    if ref.ndim == 2 and ref.shape[1] >= 2 and np.issubdtype(ref.dtype, np.floating):
        return OutputKind.CLASSES
    return OutputKind.OTHER


def tensor_error(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """`wccsim.metrics.error_stats` (MSE, SQNR in dB, max |err|) plus the relative L2 error
    ||got - ref|| / ||ref|| (nan for an all-zero reference)."""
    s = error_stats(ref, got)
    ref_energy = float(np.sum(np.square(np.asarray(ref, np.float64))))
    rel = math.sqrt(s.mse * np.size(ref) / ref_energy) if ref_energy > 0 else math.nan
    return {"mse": s.mse, "sqnr_db": s.sqnr_db, "max_abs": s.max_abs, "rel_l2": rel}


def binary_iou(ref: np.ndarray, got: np.ndarray, threshold: float) -> float:
    """IoU of the maps binarized at ``> threshold`` (DB's rule); 1.0 when both are empty."""
    a, b = np.asarray(ref) > threshold, np.asarray(got) > threshold
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that already are distributions (>= 0, sum 1 within 1e-3) are kept; others get a softmax."""
    s = np.asarray(scores, np.float64)
    if s.min() >= 0 and np.allclose(s.sum(axis=1), 1.0, atol=1e-3):
        return s / s.sum(axis=1, keepdims=True)
    z = np.exp(s - s.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def class_agreement(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Top-1 agreement (fraction of rows with the same arg-max) and mean KL(p_ref || p_got) in nats,
    probabilities clipped at 1e-12."""
    p, q = probabilities(ref), probabilities(got)
    agree = float(np.mean(p.argmax(axis=1) == q.argmax(axis=1)))
    p, q = np.clip(p, 1e-12, 1.0), np.clip(q, 1e-12, 1.0)
    kl = float(np.mean(np.sum(p * np.log(p / q), axis=1)))
    return {"top1_agree": agree, "kl_nats": max(kl, 0.0)}


def output_drift(ref: np.ndarray, got: np.ndarray, threshold: float) -> dict[str, float]:
    """`tensor_error` plus ``iou`` for a probability map or top-1 / KL for class scores."""
    out = tensor_error(ref, got)
    kind = output_kind(ref)
    if kind is OutputKind.PROB_MAP:
        out["iou"] = binary_iou(ref, got, threshold)
    elif kind is OutputKind.CLASSES:
        out.update(class_agreement(ref, got))
    return out


def empty_output(ref: np.ndarray, threshold: float) -> bool:
    """Whether a float output has nothing to find: a probability map with no pixel above `threshold`.
    Its IoU (1.0 whatever the scheme does) is left out of means and worsts; the image is counted apart."""
    return output_kind(ref) is OutputKind.PROB_MAP and not bool(np.any(np.asarray(ref) > threshold))

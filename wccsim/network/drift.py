"""Output drift of a network run against its float run, per kind of graph output.

All metric functions take the float network's output first (the reference) and the simulated one second,
both float arrays of one shape, and compute in float64. Every output gets `tensor_error`; each
`OutputKind` adds the metrics `KIND_METRICS` names (`output_drift`).
"""

from __future__ import annotations

import enum
import math
from typing import Sequence

import numpy as np

from wccsim.errors import InputError
from wccsim.metrics import ErrorSum

__all__ = ["OutputKind", "KIND_METRICS", "ALPHA_THRESHOLD", "SAD_UNIT", "output_kind", "resolve_output_kind",
           "pick_output", "tensor_error", "binary_iou", "argmax_agreement", "matte_error", "class_agreement",
           "probabilities", "output_drift", "empty_output"]


class OutputKind(enum.Enum):
    """What a graph output is (``--output-kind``).

    - ``prob_map``: a per-pixel probability (N, 1, H, W) in [0, 1], binarized at a threshold (the DB map
      of PP-OCR det);
    - ``seg_logits``: per-pixel class scores (N, C >= 2, H, W), the class is the arg-max over C;
    - ``alpha``: an alpha matte (N, 1, H, W) in [0, 1] (MODNet);
    - ``logits``: any other tensor, compared as numbers only;
    - ``class``: class scores of the whole image (N, C >= 2).
    """
    PROB_MAP = "prob_map"
    SEG_LOGITS = "seg_logits"
    ALPHA = "alpha"
    LOGITS = "logits"
    CLASS = "class"


# Metrics each kind adds to `tensor_error`'s, in output order (network.json, network.csv columns).
KIND_METRICS = {
    OutputKind.PROB_MAP: ("iou",),
    OutputKind.SEG_LOGITS: ("argmax_agree", "miou"),
    OutputKind.ALPHA: ("mae", "sad", "iou"),
    OutputKind.LOGITS: (),
    OutputKind.CLASS: ("top1_agree", "kl_nats"),
}
ALPHA_THRESHOLD = 0.5   # an alpha matte's foreground for its IoU: alpha > 0.5
SAD_UNIT = 1000.0       # matting papers report SAD (sum over an image's pixels of |alpha err|) in thousands
# The shape each kind needs, as (test, text); logits take any.
_SHAPES = {
    OutputKind.PROB_MAP: (lambda s: len(s) == 4 and s[1] == 1, "(N, 1, H, W)"),
    OutputKind.ALPHA: (lambda s: len(s) == 4 and s[1] == 1, "(N, 1, H, W)"),
    OutputKind.SEG_LOGITS: (lambda s: len(s) == 4 and s[1] >= 2, "(N, C >= 2, H, W)"),
    OutputKind.CLASS: (lambda s: len(s) == 2 and s[1] >= 2, "(N, C >= 2)"),
    OutputKind.LOGITS: (lambda s: True, "any"),
}


def output_kind(ref: np.ndarray) -> OutputKind:
    """Detect the kind of a float graph output: (N, 1, H, W) in [0, 1] -> ``prob_map``, float (N, C >= 2)
    -> ``class``, anything else -> ``logits`` (``seg_logits`` and ``alpha`` are only ever asked for)."""
    ref = np.asarray(ref)
    if ref.ndim == 4 and ref.shape[1] == 1 and ref.size and 0.0 <= ref.min() and ref.max() <= 1.0:
        return OutputKind.PROB_MAP
    if ref.ndim == 2 and ref.shape[1] >= 2 and np.issubdtype(ref.dtype, np.floating):
        return OutputKind.CLASS
    return OutputKind.LOGITS


def resolve_output_kind(name: str | OutputKind | None, ref: np.ndarray) -> OutputKind:
    """``--output-kind``: the named kind, checked against the float output `ref`'s shape, or `output_kind`
    of `ref` when None. An unknown name or a shape the kind cannot have is an `InputError`."""
    if name is None:
        return output_kind(ref)
    try:
        kind = OutputKind(name)
    except ValueError:
        raise InputError("--output-kind", "", f"one of {[k.value for k in OutputKind]}", name) from None
    fits, want = _SHAPES[kind]
    if not fits(np.shape(ref)):
        raise InputError("--output-kind", kind.value, f"an output of shape {want}",
                         f"shape {tuple(np.shape(ref))}")
    return kind


def pick_output(outputs: Sequence[str], name: str | None) -> str:
    """``--output``: the named graph output (default the first); an unknown name is an `InputError`."""
    if name is None:
        return outputs[0]
    if name not in outputs:
        raise InputError("--output", "", f"a graph output, one of {list(outputs)}", repr(name))
    return name


def tensor_error(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """`wccsim.metrics.error_stats` (MSE, SQNR in dB, max |err|) plus the relative L2 error
    ||got - ref|| / ||ref|| (nan for an all-zero reference)."""
    acc = ErrorSum().add(ref, got)                       # one pass over the pair, its sums kept
    s = acc.stats()
    rel = math.sqrt(acc.err_energy / acc.ref_energy) if acc.ref_energy > 0 else math.nan
    return {"mse": s.mse, "sqnr_db": s.sqnr_db, "max_abs": s.max_abs, "rel_l2": rel}


def binary_iou(ref: np.ndarray, got: np.ndarray, threshold: float) -> float:
    """IoU of the maps binarized at ``> threshold`` (DB's rule); 1.0 when both are empty."""
    a, b = np.asarray(ref) > threshold, np.asarray(got) > threshold
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def argmax_agreement(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Per-pixel class agreement of segmentation scores (N, C, H, W), the class being the arg-max over C.

    ``argmax_agree``: fraction of pixels whose class equals the float network's. ``miou``: mean over the
    classes present in the float arg-max of IoU(ref == c, got == c), pixels of all N images pooled.
    """
    a, b = np.argmax(ref, axis=1), np.argmax(got, axis=1)
    ious = [np.count_nonzero((a == c) & (b == c)) / np.count_nonzero((a == c) | (b == c)) for c in np.unique(a)]
    return {"argmax_agree": float(np.mean(a == b)), "miou": float(np.mean(ious))}


def matte_error(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Alpha-matte errors (N, 1, H, W), alpha in [0, 1]: ``mae`` = mean |err| over all pixels, ``sad`` =
    sum over one image's pixels of |err| / `SAD_UNIT`, mean over the N images, ``iou`` = `binary_iou` at
    `ALPHA_THRESHOLD`."""
    err = np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))
    return {"mae": float(err.mean()), "sad": float(err.reshape(len(err), -1).sum(axis=1).mean() / SAD_UNIT),
            "iou": binary_iou(ref, got, ALPHA_THRESHOLD)}


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


_KIND_DRIFT = {
    OutputKind.PROB_MAP: lambda ref, got, threshold: {"iou": binary_iou(ref, got, threshold)},
    OutputKind.SEG_LOGITS: lambda ref, got, threshold: argmax_agreement(ref, got),
    OutputKind.ALPHA: lambda ref, got, threshold: matte_error(ref, got),
    OutputKind.LOGITS: lambda ref, got, threshold: {},
    OutputKind.CLASS: lambda ref, got, threshold: class_agreement(ref, got),
}


def output_drift(ref: np.ndarray, got: np.ndarray, threshold: float,
                 kind: OutputKind | None = None) -> dict[str, float]:
    """`tensor_error` plus the metrics of the output's kind (`KIND_METRICS`; `output_kind` of `ref` when
    `kind` is None); `threshold` binarizes a ``prob_map``."""
    kind = output_kind(ref) if kind is None else kind
    return {**tensor_error(ref, got), **_KIND_DRIFT[kind](ref, got, threshold)}


def empty_output(ref: np.ndarray, threshold: float, kind: OutputKind | None = None) -> bool:
    """Whether a float output has nothing to find: a ``prob_map`` with no pixel above `threshold`, an
    ``alpha`` matte with none above `ALPHA_THRESHOLD` (`output_kind` of `ref` when `kind` is None). Its IoU
    (1.0 whatever the scheme does), SQNR and relative error (against a near-zero signal) are left out of
    means and worsts (`wccsim.results.RELATIVE_METRICS`); the image is counted apart."""
    kind = output_kind(ref) if kind is None else kind
    cut = {OutputKind.PROB_MAP: threshold, OutputKind.ALPHA: ALPHA_THRESHOLD}.get(kind)
    return cut is not None and not bool(np.any(np.asarray(ref) > cut))

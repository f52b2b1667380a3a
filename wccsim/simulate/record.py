"""What a layer simulation keeps: datapath stages (`Stage`, for inspection and RTL vectors), the pieces they
are joined from, and each scheme's outcome (error sums against the references, counters, output)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from wccsim.metrics import ErrorSum

__all__ = ["Stage", "make_stage", "Pieces", "Outcome"]


@dataclass(frozen=True)
class Stage:
    """One datapath stage: ``real = (values - zero_point) * scale``.

    Attributes
    ----------
    values : integer ndarray
        Register contents, axes named by ``order``: int64, or a narrower signed dtype that holds
        ``width_bits`` where the simulator narrows (kept columns, MAC accumulators).
    width_bits : int
        Declared register width; every value fits it (two's complement when ``signed``).
    signed : bool
    scale : float, ndarray (broadcasting against values) or None
        Real units of one integer step; None where meaningless (energy, bitmap).
    order : str
        Comma-separated axis names, e.g. ``"N,C,P"``.
    zero_point : int
    """
    values: np.ndarray
    width_bits: int
    signed: bool
    scale: float | np.ndarray | None
    order: str
    zero_point: int = 0


def make_stage(values, width_bits: int, signed: bool, scale, order: str, zero_point: int = 0) -> Stage:
    """`Stage` with a uniform scale array stored as a plain float."""
    if scale is not None:
        a = np.asarray(scale, dtype=np.float64)
        scale = float(a.flat[0]) if a.size and (a == a.flat[0]).all() else a
    return Stage(values, int(width_bits), bool(signed), scale, order, int(zero_point))


class Pieces:
    """Per-image, per-channel-block pieces of arrays, joined at the end (images on axis 0, channels on
    axis 1). Records nothing unless ``keep``."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.parts: dict[str, list[list[np.ndarray]]] = {}

    def add(self, n: int, name: str, piece: np.ndarray) -> None:
        if self.keep:
            images = self.parts.setdefault(name, [])
            images.extend([] for _ in range(n + 1 - len(images)))
            images[n].append(piece)

    def join(self, name: str) -> np.ndarray:
        """The joined array; the pieces are released (each stage is joined once)."""
        images = self.parts.pop(name)
        return np.concatenate([np.concatenate(images.pop(0), axis=1) for _ in range(len(images))], axis=0)


class Outcome:
    """One scheme's results over the layer: error sums vs the references, counters, recorded pieces and
    (``keep_y``, default ``keep``) the output (N, Cout, Ho, Wo) float64 (or ``y_dtype``: float32 stores each
    float64 value rounded to nearest, as ``astype`` does), written block by block.
    ``expect_q`` (N, Cout, Ho, Wo), optional: the framework's output integers the scheme's are compared with
    (`mismatches`)."""

    def __init__(self, keep: bool, shape: tuple, keep_y: bool | None = None, expect_q: np.ndarray | None = None,
                 y_dtype: type = np.float64):
        self.errors: dict[str, ErrorSum] = {}
        self.counters: Counter = Counter()
        self.pieces = Pieces(keep)
        self.y = np.empty(shape, y_dtype) if (keep if keep_y is None else keep_y) else None
        self.expect_q = expect_q

    def mismatches(self, n: int, blk: slice, q: np.ndarray) -> None:
        """Count (``framework_mismatches``) the output integers ``q`` (1, B, Ho, Wo) of image ``n``, channels
        ``blk`` that differ from ``expect_q``'s; nothing without ``expect_q``."""
        if self.expect_q is not None:
            self.counters["framework_mismatches"] += int(np.count_nonzero(q != self.expect_q[n:n + 1, blk]))

    def dest(self, n: int, blk: slice, shape: tuple) -> np.ndarray:
        """Where the output block of image ``n``, channels ``blk`` goes: the kept output or a new array."""
        return self.y[n:n + 1, blk] if self.y is not None else np.empty(shape)

    def error(self, name: str, ref: np.ndarray, test: np.ndarray) -> None:
        self.errors.setdefault(name, ErrorSum()).add(ref, test)

    def stats(self) -> dict:
        return {name: acc.stats() for name, acc in self.errors.items()}

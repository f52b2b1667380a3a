"""Float64 references: the plain 1x1 convolution and WCC (paper Eq. 9) without quantization.

`ref_conv` is what the network computes; `ref_wcc` is ``H^T T^T K T H x`` with the same ``k`` rule
(`wccsim.datapath.topk.num_kept`) and the same selection rule (exact top-k, ties to the lower position)
as the integer datapath, so "compression-only" error is ``ref_wcc`` against ``ref_conv`` and
"quantization-only" error is the datapath against ``ref_wcc`` (DESIGN.md section 3).

A stride ``s`` subsamples the input first (``x[:, :, ::s, ::s]``, which is what a strided 1x1 conv
computes); WCC then works on the subsampled map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wccsim.datapath.haar import forward_float, inverse_float, pad_shape
from wccsim.datapath.topk import Selection, num_kept, select
from wccsim.errors import InputError
from wccsim.hw import Metric, TopkMode, TopkSpec

__all__ = ["RefWcc", "ref_conv", "ref_wcc", "wcc_dropped", "float_energy", "conv_args"]

_WHERE = "reference"
_CHUNK_ELEMS = 1 << 18  # coefficients per channel chunk of the float Haar (2 MiB)


@dataclass(frozen=True)
class RefWcc:
    """Float64 WCC result.

    Attributes
    ----------
    y : np.ndarray
        (N, Cout, Ho, Wo) float64 output, bias included.
    k : int
        Kept positions per image.
    selection : Selection
        Kept positions (bitmap (N, P), idx (N, k)).
    coef : np.ndarray
        (N, Cin, P) float64 orthonormal Haar coefficients of the (subsampled) input, layout order.
    """
    y: np.ndarray
    k: int
    selection: Selection
    coef: np.ndarray


def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: int = 1) -> np.ndarray:
    """Float64 1x1 convolution.

    Parameters
    ----------
    x : np.ndarray
        (N, Cin, H, W) real.
    w : np.ndarray
        (Cout, Cin) or (Cout, Cin, 1, 1) real.
    b : np.ndarray, optional
        (Cout,) real bias.
    stride : int
        Spatial stride >= 1; ``x[:, :, ::stride, ::stride]`` is convolved.

    Returns
    -------
    np.ndarray
        (N, Cout, Ho, Wo) float64, ``Ho = ceil(H / stride)``, ``Wo = ceil(W / stride)``.
    """
    x, w2, b = conv_args(x, w, b, stride)
    x = x[:, :, ::stride, ::stride]
    n, cin, ho, wo = x.shape
    y = np.matmul(w2, x.reshape(n, cin, ho * wo)).reshape(n, -1, ho, wo)
    if b is not None:
        y += b[None, :, None, None]
    return y


def ref_wcc(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, rate: float, levels: int = 3,
            metric: Metric = Metric.L2, stride: int = 1) -> RefWcc:
    """Float64 WCC (paper Eq. 9): Haar, joint top-k, 1x1 conv on kept columns, zero-fill, inverse Haar.

    Parameters
    ----------
    x, w, b, stride
        As in `ref_conv`.
    rate : float
        Kept fraction in (0, 1]; ``k = num_kept(rate, hp * wp)`` over the padded positions.
    levels : int
        Haar levels (the paper uses 3); the map is zero padded to a multiple of ``2^levels``.
    metric : Metric
        Per-position energy across input channels: sum of squares, sum of |.|, or max |.|.

    Returns
    -------
    RefWcc
        The output is cropped to the unpadded size and has the bias added in the spatial domain.

    Notes
    -----
    K acts on channels and H on space, so they commute and, H being orthonormal,
    ``H^T T^T K T H x = K x - K H^T (I - T^T T) H x``: the conv minus the conv of what the selector drops.
    That form is computed, so at rate 1.0 (nothing dropped) the result is `ref_conv` bit for bit and the
    compression error is exactly 0.
    """
    x, w2, b = conv_args(x, w, b, stride)
    y = ref_conv(x, w2, b, stride)
    x = x[:, :, ::stride, ::stride]
    n, cin, h, wd = x.shape
    dropped, sel, coef = wcc_dropped(x, rate, levels, metric)
    y -= np.matmul(w2, dropped.reshape(n, cin, h * wd)).reshape(y.shape)
    return RefWcc(y, sel.k, sel, coef)


def wcc_dropped(x: np.ndarray, rate: float, levels: int = 3,
                metric: Metric = Metric.L2) -> tuple[np.ndarray, Selection, np.ndarray]:
    """What WCC's selector drops, back in space: ``H^T (I - T^T T) H x`` (float64), per image.

    ``ref_wcc = ref_conv - K dropped`` (`ref_wcc` Notes). Works image by image (the selection is per
    image), so callers may pass one image at a time.

    Parameters
    ----------
    x : np.ndarray
        (N, Cin, H, W) real, already subsampled by the stride.
    rate, levels, metric
        As in `ref_wcc`.

    Returns
    -------
    (np.ndarray, Selection, np.ndarray)
        Dropped part (N, Cin, H, W) float64, the selection (exact top-k, ties to the lower position) and
        the orthonormal coefficients (N, Cin, P) float64 in layout order.
    """
    n, cin, h, wd = x.shape
    hp, wp = pad_shape(h, wd, levels)
    step = max(1, _CHUNK_ELEMS // (n * hp * wp))
    chunks = [slice(c, c + step) for c in range(0, cin, step)]
    coef = np.empty((n, cin, hp * wp))
    for c in chunks:  # channel chunks: the float Haar's temporaries stay small (issue #6, memory)
        coef[:, c] = forward_float(x[:, c], levels)
    sel = select(float_energy(coef, metric), num_kept(rate, hp * wp), TopkSpec(metric=metric, mode=TopkMode.EXACT))
    dropped = np.empty((n, cin, h, wd))
    for c in chunks:
        dropped[:, c] = inverse_float(np.where(sel.bitmap[:, None, :], 0.0, coef[:, c]), h, wd, levels)
    return dropped, sel, coef


def float_energy(coef: np.ndarray, metric: Metric) -> np.ndarray:
    """Per-position energy of float coefficients (N, C, P) -> (N, P) float64, as `topk.energy` does on ints."""
    if metric is Metric.L2:
        return np.einsum("ncp,ncp->np", coef, coef)
    if metric is Metric.L1:
        return np.abs(coef).sum(axis=1)
    if metric is Metric.LINF:
        return np.abs(coef).max(axis=1)
    raise InputError(_WHERE, "metric", "a Metric member", metric)


def conv_args(x, w, b, stride: int):
    """Validate a 1x1 conv's arguments; return x (its float dtype kept, other dtypes as float64), w as
    (Cout, Cin) float64 and b as (Cout,) float64 or None."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim != 4 or 0 in x.shape:
        raise InputError(_WHERE, "x", "a non-empty (N, Cin, H, W) array", x.shape)
    if w.ndim == 4 and w.shape[2:] == (1, 1):
        w = w[:, :, 0, 0]
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise InputError(_WHERE, "w", f"shape (Cout, {x.shape[1]}) or (Cout, {x.shape[1]}, 1, 1)", w.shape)
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        if b.shape != (w.shape[0],):
            raise InputError(_WHERE, "b", f"shape ({w.shape[0]},)", b.shape)
    if isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise InputError(_WHERE, "stride", "a positive integer", stride)
    return x, w, b

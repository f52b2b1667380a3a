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

__all__ = ["RefWcc", "ref_conv", "ref_wcc", "float_energy"]

_WHERE = "reference"


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
    x, w2, b = _check_conv_args(x, w, b, stride)
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
    x, w2, b = _check_conv_args(x, w, b, stride)
    y = ref_conv(x, w2, b, stride)
    x = x[:, :, ::stride, ::stride]
    n, _, h, wd = x.shape
    hp, wp = pad_shape(h, wd, levels)
    coef = forward_float(x, levels)
    k = num_kept(rate, hp * wp)
    sel = select(float_energy(coef, metric), k, TopkSpec(metric=metric, mode=TopkMode.EXACT))
    dropped = inverse_float(np.where(sel.bitmap[:, None, :], 0.0, coef), h, wd, levels)
    y -= np.matmul(w2, dropped.reshape(n, x.shape[1], h * wd)).reshape(y.shape)
    return RefWcc(y, k, sel, coef)


def float_energy(coef: np.ndarray, metric: Metric) -> np.ndarray:
    """Per-position energy of float coefficients (N, C, P) -> (N, P) float64, as `topk.energy` does on ints."""
    if metric is Metric.L2:
        return np.einsum("ncp,ncp->np", coef, coef)
    if metric is Metric.L1:
        return np.abs(coef).sum(axis=1)
    if metric is Metric.LINF:
        return np.abs(coef).max(axis=1)
    raise InputError(_WHERE, "metric", "a Metric member", metric)


def _check_conv_args(x, w, b, stride):
    """Validate shapes; return x, w as (Cout, Cin), b as float64 arrays (b may stay None)."""
    x = np.asarray(x, dtype=np.float64)
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

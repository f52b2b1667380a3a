"""Float64 references written from the paper, sharing nothing with the datapath but `wccsim.rules`.

`ref_conv` is what the network computes; `ref_wcc` is WCC (paper Eq. 9), ``H^T T^T K T H x``, in float64:
the orthonormal multilevel 2D Haar transform ``H`` (Eq. 3, written here as two 1D Haar passes, along W
then along H), the joint top-k ``T`` over per-position energies across channels (exact, ties to the
lower position), the 1x1 conv ``K`` on the kept columns and the inverse transform. The rules both sides
must agree on come from `wccsim.rules`: the number of kept positions (`kept_positions`), the zero
padding (`padded_shape`) and the coefficient layout (`band_shapes`). "Compression-only" error is
``ref_wcc`` against ``ref_conv``; "quantization-only" error is the datapath against ``ref_wcc``
(DESIGN.md section 3).

A stride ``s`` subsamples the input first (``x[:, :, ::s, ::s]``, which is what a strided 1x1 conv
computes); WCC then works on the subsampled map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wccsim.errors import InputError
from wccsim.hw import Metric
from wccsim.rules import Selection, band_shapes, kept_positions, padded_shape

__all__ = ["RefWcc", "ref_conv", "ref_wcc", "wcc_dropped", "haar_forward", "haar_inverse", "float_energy",
           "top_k", "conv_args"]

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
        Kept fraction in (0, 1]; ``k = kept_positions(rate, hp * wp)`` over the padded positions.
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
        Dropped part (N, Cin, H, W) float64, the selection (`top_k`) and the orthonormal coefficients
        (N, Cin, P) float64 in layout order.
    """
    n, cin, h, wd = x.shape
    hp, wp = padded_shape(h, wd, levels)
    step = max(1, _CHUNK_ELEMS // (n * hp * wp))
    chunks = [slice(c, c + step) for c in range(0, cin, step)]
    coef = np.empty((n, cin, hp * wp))
    for c in chunks:  # channel chunks: the float Haar's temporaries stay small (issue #6, memory)
        coef[:, c] = haar_forward(x[:, c], levels)
    sel = top_k(float_energy(coef, metric), kept_positions(rate, hp * wp))
    dropped = np.empty((n, cin, h, wd))
    for c in chunks:
        dropped[:, c] = haar_inverse(np.where(sel.bitmap[:, None, :], 0.0, coef[:, c]), h, wd, levels)
    return dropped, sel, coef


def haar_forward(x: np.ndarray, levels: int) -> np.ndarray:
    """Orthonormal multilevel 2D Haar transform (paper Eq. 3), zero padded (`padded_shape`).

    Each level halves the current low band along W (pair sums and differences), then along H, and
    scales by 1/2 (the two 1D passes' 1/sqrt(2) each): for a 2x2 block ``[a b; c d]`` that is
    ``LL = (a+b+c+d)/2``, ``y2 = (a-b+c-d)/2``, ``y3 = (a+b-c-d)/2``, ``y4 = (a-b-c+d)/2``.

    Parameters
    ----------
    x : (N, C, H, W) real
    levels : int

    Returns
    -------
    (N, C, hp * wp) float64 in the layout order of `wccsim.rules.band_shapes`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise InputError(_WHERE, "x", "an (N, C, H, W) array", x.shape)
    n, c, h, w = x.shape
    hp, wp = padded_shape(h, w, levels)
    low = np.pad(x, ((0, 0), (0, 0), (0, hp - h), (0, wp - w))) if (h, w) != (hp, wp) else x
    bands = {}
    for lev in range(1, levels + 1):
        lo_w, hi_w = _analysis(low, axis=3)
        low, y3 = _analysis(lo_w, axis=2)
        y2, y4 = _analysis(hi_w, axis=2)
        low *= 0.5
        bands.update({(lev, 1): y2 * 0.5, (lev, 2): y3 * 0.5, (lev, 3): y4 * 0.5})
    bands[(levels, 0)] = low
    return np.concatenate([bands[(lev, b)].reshape(n, c, size) for lev, b, size in band_shapes(hp, wp, levels)],
                          axis=2)


def haar_inverse(coef: np.ndarray, h: int, w: int, levels: int) -> np.ndarray:
    """Inverse of `haar_forward` (float64), cropped to (h, w).

    Parameters
    ----------
    coef : (N, C, P) real in layout order, ``P = hp * wp``
    h, w : int
        Unpadded map size.
    levels : int

    Returns
    -------
    (N, C, h, w) float64
    """
    coef = np.asarray(coef, dtype=np.float64)
    hp, wp = padded_shape(h, w, levels)
    if coef.ndim != 3 or coef.shape[2] != hp * wp:
        raise InputError(_WHERE, "coef", f"shape (N, C, {hp * wp})", coef.shape)
    n, c = coef.shape[:2]
    bands, off = {}, 0
    for lev, b, size in band_shapes(hp, wp, levels):
        bands[(lev, b)] = coef[:, :, off:off + size].reshape(n, c, hp >> lev, wp >> lev)
        off += size
    low = bands[(levels, 0)]
    for lev in range(levels, 0, -1):
        lo_w = _synthesis(low, bands[(lev, 2)], axis=2)
        hi_w = _synthesis(bands[(lev, 1)], bands[(lev, 3)], axis=2)
        low = _synthesis(lo_w, hi_w, axis=3) * 0.5
    return low[:, :, :h, :w]


def _analysis(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalized 1D Haar along ``axis``: sums and differences of neighbour pairs (even + odd, even - odd)."""
    even = x[(slice(None),) * axis + (slice(0, None, 2),)]
    odd = x[(slice(None),) * axis + (slice(1, None, 2),)]
    return even + odd, even - odd


def _synthesis(lo: np.ndarray, hi: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of `_analysis` up to a factor 2: interleaves ``lo + hi`` (even) and ``lo - hi`` (odd) along ``axis``."""
    shape = list(lo.shape)
    shape[axis] *= 2
    out = np.empty(shape)
    out[(slice(None),) * axis + (slice(0, None, 2),)] = lo + hi
    out[(slice(None),) * axis + (slice(1, None, 2),)] = lo - hi
    return out


def float_energy(coef: np.ndarray, metric: Metric) -> np.ndarray:
    """Per-position energy across channels, (N, C, P) -> (N, P) float64: sum of squares (L2), sum of
    magnitudes (L1) or largest magnitude (LINF)."""
    if metric is Metric.L2:
        return np.einsum("ncp,ncp->np", coef, coef)
    if metric is Metric.L1:
        return np.abs(coef).sum(axis=1)
    if metric is Metric.LINF:
        return np.abs(coef).max(axis=1)
    raise InputError(_WHERE, "metric", "a Metric member", metric)


def top_k(energy: np.ndarray, k: int) -> Selection:
    """Exact joint top-k per image: the ``k`` largest energies of each row (N, P), ties to the lower position."""
    order = np.argsort(-energy, axis=1, kind="stable")[:, :k]
    idx = np.sort(order, axis=1).astype(np.int64)
    bitmap = np.zeros(energy.shape, dtype=bool)
    np.put_along_axis(bitmap, idx, True, axis=1)
    return Selection(bitmap, idx, int(k))


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

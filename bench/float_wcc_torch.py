"""The paper's float WCC (Eq. 9) written the way a PyTorch user writes it: the comparison pipeline.

    WCC(K, x) = H^T T^T K T H x

Haar is a stride-2 ``conv2d`` with the four orthonormal 2x2 kernels (Eq. 3), applied per channel
(``groups=C``, as the paper's public code does) to the low band, ``levels`` times; T keeps the same top-k positions for all channels, chosen by the per-position
L2 norm across channels (``torch.topk``, then ``gather``); K is the 1x1 convolution written as a matmul;
T^T scatters the k columns back into zeros; H^T is ``conv_transpose2d`` with the same kernels. Bias is
added in the spatial domain after the inverse (DESIGN.md section 2, step 8). float32 on CPU.

Used only by the benchmark (torch is an optional extra): import this module only after checking that
torch imports.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["haar_kernels", "float_wcc", "float_wcc_numpy"]


def haar_kernels(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The four orthonormal 2x2 Haar kernels (LL, y2, y3, y4) as a (4, 1, 2, 2) conv2d weight."""
    k = torch.tensor([[[1, 1], [1, 1]],
                      [[1, -1], [1, -1]],
                      [[1, 1], [-1, -1]],
                      [[1, -1], [-1, 1]]], dtype=dtype)
    return (0.5 * k).unsqueeze(1)


def _haar_forward(x: torch.Tensor, kernels: torch.Tensor, levels: int) -> tuple[torch.Tensor, list]:
    """Multilevel Haar of (N, C, H, W): returns the final low band (N, C, h, w) and [details_1, ..., details_L].

    Each details_l is (N, C, 3, H/2^l, W/2^l). Per channel, as a grouped conv (``groups=C``), the way
    the paper's public code writes it.
    """
    n, c = x.shape[:2]
    weight = kernels.repeat(c, 1, 1, 1)                                   # (4C, 1, 2, 2)
    low, details = x, []
    for _ in range(levels):
        y = F.conv2d(low, weight, stride=2, groups=c)                     # (N, 4C, h, w): per channel y1..y4
        y = y.reshape(n, c, 4, y.shape[2], y.shape[3])
        low = y[:, :, 0]
        details.append(y[:, :, 1:])
    return low, details


def _haar_inverse(low: torch.Tensor, details: list, kernels: torch.Tensor) -> torch.Tensor:
    """Inverse of `_haar_forward` with grouped ``conv_transpose2d``, coarsest level first; (N, C, H, W)."""
    n, c = low.shape[:2]
    weight = kernels.repeat(c, 1, 1, 1)
    for d in reversed(details):
        y = torch.cat([low.unsqueeze(2), d], dim=2).reshape(n, 4 * c, d.shape[3], d.shape[4])
        low = F.conv_transpose2d(y, weight, stride=2, groups=c)
    return low


def float_wcc(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, rate: float, levels: int = 3,
              stride: int = 1, kernels: torch.Tensor | None = None) -> torch.Tensor:
    """Float WCC of a 1x1 convolution, the PyTorch user's way.

    Parameters
    ----------
    x : torch.Tensor, (N, Cin, H, W) float32
        Input activation.
    w : torch.Tensor, (Cout, Cin) float32
        1x1 convolution weight.
    b : torch.Tensor, (Cout,) float32, or None
        Bias, added after the inverse transform.
    rate : float
        Fraction of the padded positions kept, k = max(1, floor(rate * P)).
    levels : int
        Haar levels.
    stride : int
        Stride of the 1x1 convolution (subsamples the input first).

    Returns
    -------
    torch.Tensor, (N, Cout, ceil(H/stride), ceil(W/stride)) float32
    """
    kernels = haar_kernels(x.dtype) if kernels is None else kernels
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    n, cin, h, wd = x.shape
    cout = w.shape[0]
    m = 2 ** levels
    x = F.pad(x, (0, -wd % m, 0, -h % m))
    hp, wp = x.shape[2], x.shape[3]
    low, details = _haar_forward(x, kernels, levels)
    # Coefficient layout [LL_L, details_L, ..., details_1], each band in raster order: (N, Cin, P).
    coef = torch.cat([low.reshape(n, cin, -1)]
                     + [d.reshape(n, cin, -1) for d in reversed(details)], dim=2)
    p = coef.shape[2]
    k = max(1, int(rate * p))
    idx = torch.topk(coef.norm(dim=1), k, dim=1).indices                       # (N, k)
    kept = torch.gather(coef, 2, idx.unsqueeze(1).expand(n, cin, k))            # (N, Cin, k)
    out = torch.matmul(w, kept)                                                 # (N, Cout, k)
    full = torch.zeros(n, cout, p, dtype=x.dtype).scatter_(2, idx.unsqueeze(1).expand(n, cout, k), out)
    sizes = [(hp >> levels) * (wp >> levels)] + [3 * (hp >> l) * (wp >> l) for l in range(levels, 0, -1)]
    parts = torch.split(full, sizes, dim=2)
    low_out = parts[0].reshape(n, cout, hp >> levels, wp >> levels)
    det_out = [parts[levels - l + 1].reshape(n, cout, 3, hp >> l, wp >> l) for l in range(1, levels + 1)]
    y = _haar_inverse(low_out, det_out, kernels)[:, :, :h, :wd]
    return y if b is None else y + b.reshape(1, cout, 1, 1)


def float_wcc_numpy(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, rate: float, levels: int = 3,
                    stride: int = 1) -> np.ndarray:
    """`float_wcc` on numpy float32 arrays (converts in and out; for checks, not for timing)."""
    bt = None if b is None else torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    y = float_wcc(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                  torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)), bt, rate, levels, stride)
    return y.numpy()

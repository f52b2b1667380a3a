"""MAC array: exact integer matrix product plus an accumulator of declared width.

The hardware computes ``acc[n, o, j] = sum_c Wq[o, c] * Xq[n, c, j]`` with integer multipliers and an
``acc_bits`` accumulator. The simulator gets the exact sum fast from float BLAS:

* float32 sgemm is exact when every partial sum is an integer of magnitude <= 2^24 (all such integers
  are representable, so no summation order or FMA can round). A reduction chunk of ``c`` input channels
  satisfies that when ``c * max|W| * max|X| <= 2^24``: up to 1024 channels for int8 operands, -128
  corner included (1024 * 128 * 128 = 2^24). Chunks are summed in int64.
* When operands are too wide for a useful float32 chunk (e.g. 16-bit), float64 dgemm is used with the
  same argument at 2^53.
* Operands wider still (products beyond 2^53) fall back to an int64 ``np.matmul`` (exact, slow).

The accumulator width is applied to the exact final sum (`accumulate`). With ``wrap`` this equals
per-step two's-complement wrapping (modular arithmetic commutes with addition). With ``saturate`` it
models an accumulator that saturates once at the end (equivalently, a wide adder tree followed by a
saturating register); a register that saturates at every step could differ when partial sums leave the
range and come back, which depends on the summation order and is not modeled.
"""

from __future__ import annotations

import numpy as np

from wccsim.hw import MacSpec, Overflow

__all__ = ["int_matmul", "accumulate", "mac_array", "exact_chunk"]

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53


def exact_chunk(max_abs_w: int, max_abs_x: int, exact_limit: int) -> int:
    """Largest reduction chunk whose partial sums stay exactly representable.

    Parameters
    ----------
    max_abs_w, max_abs_x : int
        Largest operand magnitudes (integer units).
    exact_limit : int
        2^24 for float32, 2^53 for float64.

    Returns
    -------
    int
        ``floor(exact_limit / (max_abs_w * max_abs_x))`` (0 when even one product does not fit);
        a very large number when one operand is all zeros.
    """
    prod = int(max_abs_w) * int(max_abs_x)
    if prod == 0:
        return 1 << 62
    return exact_limit // prod


def _chunked_matmul(wq: np.ndarray, xq: np.ndarray, chunk: int, dtype: type) -> np.ndarray:
    cout, cin = wq.shape
    if chunk >= cin:  # one chunk: convert straight from the operands' own dtype, no int64 accumulator
        return np.matmul(wq.astype(dtype), xq.astype(dtype)).astype(np.int64)
    acc = np.zeros((xq.shape[0], cout, xq.shape[2]), dtype=np.int64)
    for c0 in range(0, cin, chunk):
        c1 = min(cin, c0 + chunk)
        w = wq[:, c0:c1].astype(dtype)
        x = xq[:, c0:c1, :].astype(dtype)
        acc += np.matmul(w, x).astype(np.int64)
    return acc


def int_matmul(wq: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Exact integer product ``W @ X`` per sample.

    Parameters
    ----------
    wq : (Cout, Cin) integer ndarray
        Quantized weights.
    xq : (N, Cin, K) integer ndarray
        Quantized activations (K columns: kept positions or pixels).

    Returns
    -------
    (N, Cout, K) int64 ndarray
        The exact sum over Cin (no width limit; see `accumulate`).

    Examples
    --------
    >>> int_matmul(np.array([[-128, 127]]), np.array([[[-128], [127]]])).tolist()
    [[[32513]]]
    """
    return _int_matmul(wq, xq)[0]


def _int_matmul(wq, xq) -> tuple[np.ndarray, int]:
    """`int_matmul` plus a bound on its magnitudes, ``Cin * max|W| * max|X|`` (lets `mac_array` skip the
    accumulator's range scan when the bound already fits)."""
    wq, xq = _as_int(wq), _as_int(xq)
    if wq.ndim != 2 or xq.ndim != 3 or wq.shape[1] != xq.shape[1]:
        raise ValueError(f"int_matmul: shapes {wq.shape} and {xq.shape} do not match (Cout,Cin) x (N,Cin,K)")
    max_w, max_x = _max_abs(wq), _max_abs(xq)
    return _exact_product(wq, xq, max_w, max_x), wq.shape[1] * max_w * max_x


def _exact_product(wq: np.ndarray, xq: np.ndarray, max_w: int, max_x: int) -> np.ndarray:
    cin = wq.shape[1]
    chunk32 = exact_chunk(max_w, max_x, _F32_EXACT)
    if chunk32 >= min(cin, 64):
        return _chunked_matmul(wq, xq, chunk32, np.float32)
    chunk64 = exact_chunk(max_w, max_x, _F64_EXACT)
    if chunk64 >= 1:
        return _chunked_matmul(wq, xq, chunk64, np.float64)
    return np.matmul(wq.astype(np.int64), xq.astype(np.int64))


def _as_int(a) -> np.ndarray:
    """The operand as is when it is an integer array (int8 stays int8: no int64 copy), else as int64."""
    a = np.asarray(a)
    return a if np.issubdtype(a.dtype, np.integer) else a.astype(np.int64)


def _max_abs(a: np.ndarray) -> int:
    """``max |a|`` as a Python int, without an ``abs`` temporary (and no int8 ``abs(-128)`` wrap)."""
    return max(-int(a.min()), int(a.max())) if a.size else 0


def accumulate(acc: np.ndarray, acc_bits: int, overflow: Overflow) -> tuple[np.ndarray, int]:
    """Apply an ``acc_bits`` two's-complement accumulator to exact sums.

    Parameters
    ----------
    acc : int64 ndarray
        Exact sums.
    acc_bits : int
        Accumulator width in bits (2..63); range [-2^(acc_bits-1), 2^(acc_bits-1) - 1].
    overflow : Overflow
        ``SATURATE`` clamps to the range; ``WRAP`` keeps the low ``acc_bits`` bits (two's complement).

    Returns
    -------
    acc : int64 ndarray
        Values within the range.
    overflow_count : int
        Number of elements whose exact sum was outside the range.
    """
    if not 2 <= acc_bits <= 63:
        raise ValueError(f"accumulate: acc_bits must be in 2..63, got {acc_bits}")
    acc = np.asarray(acc, dtype=np.int64)
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    if acc.size == 0 or (acc.min() >= lo and acc.max() <= hi):
        return acc, 0
    out_of_range = (acc < lo) | (acc > hi)
    count = int(np.count_nonzero(out_of_range))
    if count == 0:
        return acc, 0
    if overflow is Overflow.SATURATE:
        return np.clip(acc, lo, hi), count
    if overflow is Overflow.WRAP:
        mask = (1 << acc_bits) - 1
        return ((acc - lo) & mask) + lo, count
    raise ValueError(f"accumulate: unknown overflow mode {overflow!r}")


def mac_array(wq: np.ndarray, xq: np.ndarray, spec: MacSpec) -> tuple[np.ndarray, int]:
    """MAC array: exact product then the accumulator of ``spec.acc_bits`` with ``spec.overflow``.

    Parameters
    ----------
    wq : (Cout, Cin) integer ndarray
    xq : (N, Cin, K) integer ndarray
    spec : MacSpec

    Returns
    -------
    acc : (N, Cout, K) int64 ndarray
        Accumulator contents (within ``acc_bits``).
    overflows : int
        Number of accumulators whose exact sum overflowed.
    """
    acc, bound = _int_matmul(wq, xq)
    if bound < (1 << (spec.acc_bits - 1)) and 2 <= spec.acc_bits <= 63:  # no sum can leave the register
        return acc, 0
    return accumulate(acc, spec.acc_bits, spec.overflow)

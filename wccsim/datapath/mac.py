"""MAC array: exact integer matrix product plus an accumulator of declared width.

The hardware computes ``acc[n, o, j] = sum_c Wq[o, c] * Xq[n, c, j]`` with integer multipliers and an
``acc_bits`` accumulator. The simulator gets the exact sum fast from float BLAS:

* float32 sgemm is exact when every partial sum is an integer of magnitude <= 2^24 (all such integers
  are representable, so no summation order or FMA can round). A reduction chunk of ``c`` input channels
  satisfies that when ``c * max|W| * max|X| <= 2^24``: up to 1024 channels for int8 operands, -128
  corner included (1024 * 128 * 128 = 2^24). Chunks are summed in int32 when ``Cin * max|W| * max|X|
  < 2^31`` (no sum can leave it), else int64.
* When operands are too wide for a useful float32 chunk (e.g. 16-bit), float64 dgemm is used with the
  same argument at 2^53.
* Operands wider still (products beyond 2^53) fall back to an int64 ``np.matmul`` (exact, slow).

The accumulator width (`Overflow`): with ``wrap`` it is applied to the exact final sum (`accumulate`),
which equals per-step two's-complement wrapping (modular arithmetic commutes with addition). ``saturate``
clips the exact sum once at the end: a wide adder tree or an accumulator with guard bits whose value is
clipped when written out. ``saturate_each_add`` models a saturating accumulator register: after every
addition ``acc = clip(acc + W[o, c] * X[c, j])``, in the array's reduction order, ascending input channel
``c`` (a systolic column passes its partial sum down the PE rows in channel order and the next tile of
rows continues from the stored sum, so tiling does not change the order). It differs from ``saturate``
only where a partial sum leaves the range; only accumulators whose ``sum_c |W[o, c] X[c, j]|`` exceeds
the range are re-run in that order (`_saturate_each_add`), the others are the exact sums. Overflows
count accumulators with at least one clipped addition.

Result dtype: `mac_array` returns int32 when ``acc_bits <= 32`` (the register fits), `int_matmul` when
``Cin * max|W| * max|X| < 2^31`` (every exact sum fits); int64 otherwise. The float GEMM's output buffer
becomes the integer result in place (cached numba kernels, one pass that also applies the accumulator
range), so the common int8 case allocates no int64 array.
"""

from __future__ import annotations

import numba
import numpy as np

from wccsim.hw import MacSpec, Overflow

__all__ = ["int_matmul", "accumulate", "mac_array", "exact_chunk"]

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_I32_LIMIT = 1 << 31


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


_NONE, _SATURATE, _WRAP = 0, 1, 2  # accumulator range modes of the conversion kernels


@numba.njit(cache=True, inline="always")
def _convert_loop(src, out, lo, hi, mode):
    """``out[i] = src[i]`` (exact integer sums held as floats or ints) through the accumulator range
    ``[lo, hi]`` (``hi - lo + 1`` a power of two): ``_NONE`` (the values are known to fit), ``_SATURATE``
    (clamp) or ``_WRAP`` (keep the low bits, two's complement), as `accumulate` does. Returns how many
    values were outside. ``out`` may be ``src`` itself or its memory viewed as an integer dtype of the
    same item size (element i is read before it is written)."""
    count = 0
    if mode == _NONE:
        for i in range(src.size):
            out[i] = src[i]
    elif mode == _SATURATE:
        for i in range(src.size):
            v = np.int64(src[i])
            c = min(max(v, lo), hi)
            count += c != v
            out[i] = c
    else:
        mask = hi - lo
        for i in range(src.size):
            v = np.int64(src[i])
            count += (v < lo) | (v > hi)
            out[i] = ((v - lo) & mask) + lo  # identity inside the range
    return count


@numba.njit(cache=True, nogil=True)
def _convert(src, out, lo, hi, mode):
    """`_convert_loop` into a separate array."""
    return _convert_loop(src, out, lo, hi, mode)


@numba.njit(cache=True, nogil=True)
def _convert_f32_in_place(buf, lo, hi, mode):
    """`_convert_loop` from a float32 buffer into the same memory viewed as int32 (one view inside the
    kernel, so the compiler sees one array and vectorizes; two aliasing arguments would not)."""
    return _convert_loop(buf, buf.view(np.int32), lo, hi, mode)


@numba.njit(cache=True, nogil=True)
def _convert_in_place(acc, lo, hi, mode):
    """`_convert_loop` on an integer array in place."""
    return _convert_loop(acc, acc, lo, hi, mode)


@numba.njit(cache=True, nogil=True)
def _add(src, acc):
    """``acc[i] += src[i]`` (exact integer floats or ints; the sums fit ``acc``'s dtype)."""
    for i in range(src.size):
        acc[i] += np.int64(src[i])


def _finish(src: np.ndarray, out_dtype: type, lo: int | None, hi: int | None,
            wrap: bool) -> tuple[np.ndarray, int]:
    """C-contiguous ``src`` (exact integer sums, float or int) as ``out_dtype`` through the accumulator
    range ``[lo, hi]`` (None: no range, the values are known to fit ``out_dtype``), with the count of values
    outside. Converts in place where it can (``src`` is consumed)."""
    mode = _NONE if lo is None else _WRAP if wrap else _SATURATE
    lo, hi = (0, 0) if lo is None else (lo, hi)
    flat = src.reshape(-1)
    if src.dtype == out_dtype:
        return src, (int(_convert_in_place(flat, lo, hi, mode)) if mode != _NONE else 0)
    if src.dtype == np.float32 and out_dtype == np.int32:
        count = _convert_f32_in_place(flat, lo, hi, mode)
        return src.view(np.int32), int(count)
    out = np.empty(src.shape, out_dtype)
    return out, int(_convert(flat, out.reshape(-1), lo, hi, mode))


@numba.njit(cache=True, nogil=True)
def _to_float32_minmax(x, out):
    """``out[i] = float32(x[i])`` and ``(min(x), max(x))`` as int64, in one pass (``x`` non-empty)."""
    lo = x[0]
    hi = lo
    for i in range(x.size):
        v = x[i]
        out[i] = v
        lo = min(lo, v)
        hi = max(hi, v)
    return np.int64(lo), np.int64(hi)


def _x_float32(xq: np.ndarray) -> tuple[np.ndarray | None, int]:
    """``xq`` as float32 (exact where ``max|x| <= 2^24``; None for empty or 64-bit unsigned operands) and
    ``max|x|``, in one pass."""
    if xq.size == 0 or (xq.dtype.kind == "u" and xq.itemsize == 8):
        return None, _max_abs(xq)
    xq = np.ascontiguousarray(xq)
    xf = np.empty(xq.shape, np.float32)
    lo, hi = _to_float32_minmax(xq.reshape(-1), xf.reshape(-1))
    return xf, max(-int(lo), int(hi))


def _float_product(wq, x, chunk: int, dtype: type, out_dtype: type, sum_dtype: type, lo, hi,
                   wrap: bool) -> tuple[np.ndarray, int]:
    """Exact ``W @ X`` by ``dtype`` GEMMs over reduction chunks of ``chunk`` channels (``x`` integer, or
    already ``dtype``), summed in ``sum_dtype`` (an integer dtype that holds every exact sum), returned as
    ``out_dtype`` through the accumulator range ``[lo, hi]`` (None: no range)."""
    cout, cin = wq.shape
    shape = (x.shape[0], cout, x.shape[2])
    buf = np.empty(shape, dtype)
    if chunk >= cin:  # one GEMM; its float result becomes the integer result in place where sizes allow
        np.matmul(wq.astype(dtype), x.astype(dtype, copy=False), out=buf)
        return _finish(buf, out_dtype, lo, hi, wrap)
    acc = np.zeros(shape, sum_dtype)
    flat_buf, flat_acc = buf.reshape(-1), acc.reshape(-1)
    for c0 in range(0, cin, chunk):
        c1 = min(cin, c0 + chunk)
        np.matmul(wq[:, c0:c1].astype(dtype), x[:, c0:c1, :].astype(dtype, copy=False), out=buf)
        _add(flat_buf, flat_acc)
    return _finish(acc, out_dtype, lo, hi, wrap)


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
    (N, Cout, K) int32 ndarray when ``Cin * max|W| * max|X| < 2^31`` (every exact sum fits), else int64
        The exact sum over Cin (no width limit; see `accumulate`).

    Examples
    --------
    >>> int_matmul(np.array([[-128, 127]]), np.array([[[-128], [127]]])).tolist()
    [[[32513]]]
    """
    wq, xq, xf, max_w, max_x = _operands(wq, xq)
    bound = wq.shape[1] * max_w * max_x
    out_dtype = np.int32 if bound < _I32_LIMIT else np.int64
    return _exact_product(wq, xq, xf, max_w, max_x, out_dtype, None, None, False)[0]


def _operands(wq, xq) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int, int]:
    """Integer operands (validated shapes), ``xq`` as float32 (`_x_float32`) and the largest magnitudes."""
    wq, xq = _as_int(wq), _as_int(xq)
    if wq.ndim != 2 or xq.ndim != 3 or wq.shape[1] != xq.shape[1]:
        raise ValueError(f"int_matmul: shapes {wq.shape} and {xq.shape} do not match (Cout,Cin) x (N,Cin,K)")
    xf, max_x = _x_float32(xq)
    return wq, xq, xf, _max_abs(wq), max_x


def _exact_product(wq: np.ndarray, xq: np.ndarray, xf: np.ndarray | None, max_w: int, max_x: int,
                   out_dtype: type, lo: int | None, hi: int | None, wrap: bool) -> tuple[np.ndarray, int]:
    """Exact ``W @ X`` as ``out_dtype`` through the accumulator range ``[lo, hi]`` (None: no range, every
    exact sum fits ``out_dtype``), with the count of sums outside the range. ``xf``: ``xq`` as float32 or
    None (exact whenever the float32 path is taken: it needs ``max|W| * max|X| <= 2^24``)."""
    cin = wq.shape[1]
    sum_dtype = np.int32 if cin * max_w * max_x < _I32_LIMIT else np.int64
    chunk32 = exact_chunk(max_w, max_x, _F32_EXACT)
    if chunk32 >= min(cin, 64):
        return _float_product(wq, xq if xf is None else xf, chunk32, np.float32, out_dtype, sum_dtype, lo, hi,
                              wrap)
    chunk64 = exact_chunk(max_w, max_x, _F64_EXACT)
    if chunk64 >= 1:
        return _float_product(wq, xq, chunk64, np.float64, out_dtype, sum_dtype, lo, hi, wrap)
    acc = np.matmul(wq.astype(np.int64), xq.astype(np.int64))
    return _finish(acc, out_dtype, lo, hi, wrap)


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
    acc : (N, Cout, K) int32 ndarray when ``acc_bits <= 32``, else int64
        Accumulator contents (within ``acc_bits``), the same values as `accumulate` on the exact sums.
    overflows : int
        Number of accumulators whose exact sum overflowed.
    """
    acc_bits = spec.acc_bits
    if not 2 <= acc_bits <= 63:
        raise ValueError(f"accumulate: acc_bits must be in 2..63, got {acc_bits}")
    wq, xq, xf, max_w, max_x = _operands(wq, xq)
    out_dtype = np.int32 if acc_bits <= 32 else np.int64
    if wq.shape[1] * max_w * max_x < (1 << (acc_bits - 1)):  # no sum can leave the register
        return _exact_product(wq, xq, xf, max_w, max_x, out_dtype, None, None, False)
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    if spec.overflow is Overflow.SATURATE_EACH_ADD:
        return _saturate_each_add(wq, xq, lo, hi, out_dtype)
    if spec.overflow not in (Overflow.SATURATE, Overflow.WRAP):
        raise ValueError(f"accumulate: unknown overflow mode {spec.overflow!r}")
    return _exact_product(wq, xq, xf, max_w, max_x, out_dtype, lo, hi, spec.overflow is Overflow.WRAP)


def _saturate_each_add(wq: np.ndarray, xq: np.ndarray, lo: int, hi: int, out_dtype: type) -> tuple[np.ndarray, int]:
    """``saturate_each_add`` (module docstring): exact sums where no partial sum can leave ``[lo, hi]``,
    the ascending-channel saturating loop elsewhere; returns (accumulators, overflow count)."""
    exact = int_matmul(wq, xq).astype(np.int64)
    bound = int_matmul(np.abs(wq.astype(np.int64)), np.abs(xq.astype(np.int64)))
    n, o, j = np.nonzero(bound > min(hi, -lo))
    acc = exact
    count = 0
    if n.size:
        vals, flags = _saturating_sums(wq.astype(np.int64), xq.astype(np.int64), n, o, j, lo, hi)
        acc[n, o, j] = vals
        count = int(flags.sum())
    return acc.astype(out_dtype), count


@numba.njit(cache=True, nogil=True)
def _saturating_sums(w, x, n, o, j, lo, hi):
    """For each (n[i], o[i], j[i]): ``acc = clip(acc + w[o, c] * x[n, c, j], lo, hi)`` for c = 0, 1, ...;
    the final values and whether any addition clipped."""
    vals = np.empty(n.size, np.int64)
    flags = np.zeros(n.size, np.int64)
    for i in range(n.size):
        acc = 0
        for c in range(w.shape[1]):
            acc += w[o[i], c] * x[n[i], c, j[i]]
            if acc > hi:
                acc, flags[i] = hi, 1
            elif acc < lo:
                acc, flags[i] = lo, 1
        vals[i] = acc
    return vals, flags

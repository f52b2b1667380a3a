"""One 1x1 conv layer through the bit-accurate WCC datapath, plus the plain baselines (DESIGN.md section 2).

`calibrate_layer` makes, offline and in float, the small frozen record the integer datapath needs
(`LayerParams`: quantizers, quantized weights and bias, requant records); `run_datapath` runs only the
integer stages with it and records each one as a `Stage` (integers, declared width, signedness, real scale,
axis order); these become RTL test vectors (`wccsim.vectors`). `simulate_layer` = `calibrate_layer` +
`run_datapath` on the same tensor (stages 1-4a shared, not run twice) + float references, errors, baselines.
``real = (values - zero_point) * scale``; ``scale`` is None where it has no meaning (energy, bitmap) and
an array broadcasting against ``values`` where it varies (deferred Haar levels, per-channel weights).

=============  ==========  ======================================================================
stage          order       contents (width)
=============  ==========  ======================================================================
input_q        N,C,H,W     input quantized to act_bits, zero point included (act_bits)
haar_l<l>      N,C,4,h,w   forward Haar level l = 1..L: y1..y4 of each 2x2 block (haar.width_bits)
haar_coef      N,C,P       all coefficients in layout order (haar.width_bits)
energy         N,P         per-position energy across channels, deferred weighting applied (unsigned)
bitmap         N,P         1 = position kept (1 bit, unsigned)
kept           N,C,k       kept coefficient columns, ascending position (haar.width_bits)
coef_q         N,C,k       kept coefficients requantized to act_bits signed, orthonormal units
weight_q       Cout,Cin    weights, weight_bits signed symmetric
acc            N,Cout,k    MAC accumulators (mac.acc_bits)
zero_filled    N,Cout,P    accumulators scattered back to P positions, zeros elsewhere (mac.acc_bits)
inverse        N,Cout,H,W  inverse Haar, cropped (acc_bits + L per_level, acc_bits + 2L deferred)
bias_q         Cout        bias at scale s_coef * s_w (32)
pre_requant    N,Cout,H,W  inverse + bias (inverse width or 32, whichever is larger, + 1)
output_q       N,Cout,H,W  output requantized to act_bits (spec.requant.mode), zero point included
=============  ==========  ======================================================================

H, W are the (strided) spatial size, P = hp * wp padded positions, k kept positions.

Choices (documented here, tested in tests/test_layer.py):

* Input scale: calibrated on the whole input ``x`` (the tensor the previous layer wrote) with
  ``spec.quant`` (bits, sign, method); output scale: calibrated on ``ref_conv``'s output with the same
  method, sign chosen from the data (``AUTO``). WCC and baselines share both (same calibration, fair).
* Coefficient quantization: the scale is calibrated (same method, signed) on the real values of the
  kept coefficients; the integer coefficients are requantized with the gemmlowp fixed-point multiplier
  (always ``FIXED_POINT``; ``spec.requant.mode`` applies to the output stage), with the input pre-shifted
  into the int32 headroom (``in_bits = haar.width_bits``, see `requant_params`). With ``DEFERRED`` Haar
  the multiplier is per level and also divides by ``2^l``, so ``coef_q`` is in orthonormal units and
  rounding happens once. The multipliers are stored per Haar level (`LayerParams.coef_requant`) and
  picked per kept column.
* Bias: ``rint(b / (s_coef * s_w))`` saturated to int32, added after the inverse transform.
* Fixed scales: `run_datapath` applies a `LayerParams` to any input of the layer (as a chip does); only
  the integers, the top-k selection and the counters follow that input.
* Baselines (`simulate_plain`, one code path, the same MAC and requant code as WCC): no Haar; quantize
  the input at ``act_bits``, MAC, bias, requantize to the *same* output register as WCC
  (``spec.quant.act_bits``), so that schemes differ only in how the input is represented.
  ``int8``: 8-bit inputs and 8-bit weights. ``uniform_nbit``: ``n = max(2, floor(rate * act_bits + 1/2))``
  input bits (round half up, rate read exactly as its decimal), ``spec.quant.weight_bits`` weights.

Working set (issue #6): the layer runs image by image (top-k is per image) and, after the MAC, channel
block by channel block (about `_BLOCK_ELEMS` outputs at a time, `_channel_blocks`), references and
baselines included, so no stage of the whole output tensor need exist at once. ``keep=False``
(`wccsim run`, sweeps) keeps no stage and no output: errors (`wccsim.metrics.ErrorSum`) and counters are
accumulated block by block. ``keep=True`` joins the blocks into the stages above and the outputs. Both
run the same code in the same block order, so their numbers are identical.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from wccsim.calibrate import CalibSample, QuantParams, act_params, quantize, requant_params, weight_params
from wccsim.datapath import haar, topk
from wccsim.datapath.mac import mac_array
from wccsim.datapath.requant import INT32_MAX, INT32_MIN, RequantParams, requantize
from wccsim.errors import InputError
from wccsim.hw import ActSign, CalibMethod, DatapathSpec, Metric, Normalize, RequantMode
from wccsim.metrics import ErrorSum
from wccsim.reference import conv_args, ref_conv, wcc_dropped

__all__ = ["Stage", "BaselineResult", "LayerParams", "DatapathResult", "LayerResult", "calibrate_layer",
           "run_datapath", "calibrate_and_run", "simulate_layer", "simulate_plain", "uniform_bits"]

_WHERE = "layer"
_BIAS_BITS = 32
_BLOCK_ELEMS = 1 << 16  # outputs per channel block: 512 KiB per float64 block array (cache-sized)


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


@dataclass(frozen=True)
class BaselineResult:
    """A plain (no Haar) quantized layer: output, errors vs ``ref_conv`` (key ``'total'``), widths.

    ``y`` (N, Cout, Ho, Wo) float64 and ``stages`` are None and {} when simulated with ``keep=False``.
    ``output_shape`` is the output's shape; ``input_nonzero_fraction`` the fraction of input activations
    quantized to a code other than the zero point (what ZVC stores).
    """
    y: np.ndarray | None
    errors: dict
    act_bits: int
    weight_bits: int
    stages: dict
    counters: dict
    output_shape: tuple
    input_nonzero_fraction: float


# ------------------------------------------------------------------------------------------- helpers

def _stage(values, width_bits: int, signed: bool, scale, order: str, zero_point: int = 0) -> Stage:
    """Stage with a uniform scale array stored as a plain float."""
    if scale is not None:
        a = np.asarray(scale, dtype=np.float64)
        scale = float(a.flat[0]) if a.size and (a == a.flat[0]).all() else a
    return Stage(values, int(width_bits), bool(signed), scale, order, int(zero_point))


def _check_bits(field: str, bits: int) -> int:
    if isinstance(bits, bool) or int(bits) != bits or not 2 <= bits <= 16:
        raise InputError(_WHERE, field, "an integer in 2..16", bits)
    return int(bits)


def _channel_blocks(cout: int, hw: int) -> list[slice]:
    """Output channel blocks of about `_BLOCK_ELEMS` outputs each (at least one channel)."""
    step = max(1, min(cout, _BLOCK_ELEMS // max(1, hw)))
    return [slice(c, min(c + step, cout)) for c in range(0, cout, step)]


class _Pieces:
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


@dataclass(frozen=True)
class _Layer:
    """A validated 1x1 conv: the input as given (float dtype kept), its strided view (N, Cin, H, W),
    weights (Cout, Cin) float64, bias (Cout,) float64 or None."""
    x: np.ndarray
    xs: np.ndarray
    w2: np.ndarray
    b: np.ndarray | None

    def image(self, n: int) -> np.ndarray:
        """Strided image ``n`` as (1, Cin, H, W) float64."""
        return np.ascontiguousarray(self.xs[n:n + 1], dtype=np.float64)

    def blocks(self) -> list[slice]:
        return _channel_blocks(self.w2.shape[0], self.xs.shape[2] * self.xs.shape[3])

    def ref_block(self, x_n: np.ndarray, blk: slice) -> np.ndarray:
        """``ref_conv`` output channels ``blk`` of the image ``x_n`` (1, Cin, H, W): (1, B, H, W) float64."""
        return ref_conv(x_n, self.w2[blk], None if self.b is None else self.b[blk])

    @property
    def output_shape(self) -> tuple:
        n, _, h, w = self.xs.shape
        return (n, self.w2.shape[0], h, w)


def _prepare(x, w, b, stride: int) -> _Layer:
    x, w2, b = conv_args(x, w, b, stride)
    return _Layer(x, x[:, :, ::stride, ::stride], w2, b)


def _input_params(x_full, bits: int, spec: DatapathSpec) -> QuantParams:
    """Input quantizer calibrated on the whole input (the tensor the previous layer wrote)."""
    q = spec.quant
    return act_params(x_full, bits, q.act_sign, q.calib, q.percentile)


def _quantize_input(x_n: np.ndarray, qp: QuantParams) -> tuple[np.ndarray, np.ndarray]:
    """Quantize one (strided) image; returns the codes (zero point included, int64) and codes - zero
    point in the narrowest integer dtype holding them (int8 for signed 8-bit: cheap for the MAC)."""
    xq = quantize(x_n, qp)
    x_int = xq - qp.zero_point if qp.zero_point else xq
    return xq, x_int.astype(_int_dtype(qp.bits + (0 if qp.signed else 1)))


def _int_dtype(bits: int):
    """Narrowest numpy signed integer dtype holding a ``bits``-bit signed register."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if np.iinfo(t).bits >= bits)


def _output_params(layer: _Layer, bits: int, spec: DatapathSpec) -> QuantParams:
    """Output quantizer calibrated on ``ref_conv``'s output, computed image by image, block by block
    (`CalibSample` keeps what the method reads)."""
    q = spec.quant
    sample = CalibSample(math.prod(layer.output_shape), q.calib)
    for n in range(layer.xs.shape[0]):
        x_n = layer.image(n)
        for blk in layer.blocks():
            sample.add(layer.ref_block(x_n, blk))
    return sample.params(bits, ActSign.AUTO, q.percentile)


def _quantize_weights(w2: np.ndarray, bits: int, spec: DatapathSpec) -> tuple[np.ndarray, np.ndarray]:
    """Weights quantized symmetric; returns wq (Cout, Cin) int64 and the scale shaped (Cout, 1)."""
    s = np.broadcast_to(np.asarray(weight_params(w2, bits, spec.quant.weight_granularity), np.float64),
                        (w2.shape[0],)).reshape(-1, 1)
    return quantize(w2, QuantParams(1.0, 0, bits, True), scale=s), s


def _quantize_bias(b, s_acc: np.ndarray, cout: int) -> tuple[np.ndarray, int]:
    """Bias at the accumulator scale (s_acc (Cout, 1)), int32 saturating, and its saturation count;
    zeros without bias."""
    if b is None:
        return np.zeros(cout, dtype=np.int64), 0
    raw = np.rint(b / s_acc[:, 0])
    sat = int(np.count_nonzero((raw < INT32_MIN) | (raw > INT32_MAX)))
    return np.clip(raw, INT32_MIN, INT32_MAX).astype(np.int64), sat


def _output_requant(act_scale: float, s_w: np.ndarray, out_qp: QuantParams) -> RequantParams:
    """Output record for (N, Cout, H, W) integers at scale ``act_scale * s_w`` (s_w (Cout, 1)); fields
    shaped (1, Cout, 1, 1). The two scales go to `requant_params` separately, so ``FLOAT32`` forms its
    multiplier exactly as onnxruntime's QLinearConv does."""
    return requant_params(act_scale, out_qp, weight_scale=s_w[None, :, :, None])


def _channels(rp: RequantParams, blk: slice) -> RequantParams:
    """The output record (fields (1, Cout, 1, 1)) for output channels ``blk``."""
    return replace(rp, multiplier=rp.multiplier[:, blk], left_shift=rp.left_shift[:, blk],
                   shift=rp.shift[:, blk], real_scale=rp.real_scale[:, blk],
                   float_scale=rp.float_scale[:, blk], pow2_shift=rp.pow2_shift[:, blk])


def _output_scale(act_scale: float, s_w: np.ndarray, out_qp: QuantParams, rp: RequantParams,
                  mode: RequantMode):
    """Real units of one output step: the calibrated scale, or with ``POW2`` the one the shifter realizes,
    ``act_scale * s_w * 2^pow2_shift`` (per channel with per-channel weights), shaped (1, Cout, 1, 1)."""
    if mode is RequantMode.POW2:
        return act_scale * s_w[None, :, :, None] * np.exp2(rp.pow2_shift)
    return out_qp.scale


def _output_block(acc_spatial: np.ndarray, blk: slice, bq: np.ndarray, out_qp: QuantParams,
                  rp: RequantParams, out_scale, mode: RequantMode, n: int, out: "_Outcome"):
    """Bias add and output requant of output channels ``blk`` of image ``n`` (integers (1, B, H, W); the
    bias is added in place when the block is not recorded and is int64, so the sum cannot wrap); records
    pre_requant and output_q; returns the dequantized block (float64, written into the kept output when
    there is one) and the saturations."""
    bias = bq[None, blk, None, None]
    in_place = not out.pieces.keep and acc_spatial.dtype == np.int64
    pre = np.add(acc_spatial, bias, out=acc_spatial) if in_place else acc_spatial + bias
    q, sat = requantize(pre, _channels(rp, blk), mode)
    out.pieces.add(n, "pre_requant", pre)
    out.pieces.add(n, "output_q", q)
    scale = out_scale[:, blk] if np.ndim(out_scale) else out_scale
    return np.multiply(q - out_qp.zero_point if out_qp.zero_point else q, scale, out=out.dest(n, blk, q.shape)), sat


def _output_stages(pieces: _Pieces, acc_bits: int, bq: np.ndarray, act_scale: float, s_w: np.ndarray,
                   out_qp: QuantParams, out_scale) -> dict:
    """Stages bias_q, pre_requant, output_q from the recorded pieces."""
    s4 = act_scale * s_w[None, :, :, None]
    return {"bias_q": _stage(bq, _BIAS_BITS, True, act_scale * s_w[:, 0], "Cout"),
            "pre_requant": _stage(pieces.join("pre_requant"), max(acc_bits, _BIAS_BITS) + 1, True, s4,
                                  "N,Cout,H,W"),
            "output_q": _stage(pieces.join("output_q"), out_qp.bits, out_qp.signed, out_scale, "N,Cout,H,W",
                               out_qp.zero_point)}


def uniform_bits(rate: float, act_bits: int) -> int:
    """Bits of the uniform baseline at the same effective rate: ``max(2, floor(rate * act_bits + 1/2))``.

    >>> uniform_bits(0.25, 8), uniform_bits(0.3125, 8), uniform_bits(0.1, 8), uniform_bits(1.0, 8)
    (2, 3, 2, 8)
    """
    topk.num_kept(rate, 1)  # validates the rate
    return max(2, math.floor(Fraction(repr(float(rate))) * int(act_bits) + Fraction(1, 2)))


class _Outcome:
    """One scheme's results over the layer: error sums vs the references, counters, recorded pieces and
    (``keep_y``, default ``keep``) the output (N, Cout, Ho, Wo) float64, written block by block."""

    def __init__(self, keep: bool, shape: tuple, keep_y: bool | None = None):
        self.errors: dict[str, ErrorSum] = {}
        self.counters: Counter = Counter()
        self.pieces = _Pieces(keep)
        self.y = np.empty(shape) if (keep if keep_y is None else keep_y) else None

    def dest(self, n: int, blk: slice, shape: tuple) -> np.ndarray:
        """Where the output block of image ``n``, channels ``blk`` goes: the kept output or a new array."""
        return self.y[n:n + 1, blk] if self.y is not None else np.empty(shape)

    def error(self, name: str, ref: np.ndarray, test: np.ndarray) -> None:
        self.errors.setdefault(name, ErrorSum()).add(ref, test)

    def stats(self) -> dict:
        return {name: acc.stats() for name, acc in self.errors.items()}


# --------------------------------------------------------------------------------------- plain path

@dataclass(frozen=True)
class _PlainParams:
    """Offline record of a plain (no Haar) layer: input quantizer, weights, bias, output requant."""
    in_qp: QuantParams
    weight_q: np.ndarray
    weight_scale: np.ndarray
    bias_q: np.ndarray
    bias_saturations: int
    out_qp: QuantParams
    out_requant: RequantParams
    out_scale: float | np.ndarray


def _plain_params(layer: _Layer, spec: DatapathSpec, act_bits: int, weight_bits: int,
                  out_qp: QuantParams) -> _PlainParams:
    in_qp = _input_params(layer.x, act_bits, spec)
    wq, s_w = _quantize_weights(layer.w2, weight_bits, spec)
    bq, bias_sat = _quantize_bias(layer.b, in_qp.scale * s_w, wq.shape[0])
    rp = _output_requant(in_qp.scale, s_w, out_qp)
    return _PlainParams(in_qp, wq, s_w, bq, bias_sat, out_qp, rp,
                        _output_scale(in_qp.scale, s_w, out_qp, rp, spec.requant.mode))


def _plain_image(n: int, x_n: np.ndarray, blocks: list, p: _PlainParams, spec: DatapathSpec, out: _Outcome):
    """No Haar, image ``n``: quantize, MAC over pixels, bias, requantize (the same units WCC uses);
    yields (blk, dequantized output block)."""
    _, cin, h, w = x_n.shape
    xq, x_int = _quantize_input(x_n, p.in_qp)                                                # 1. input
    out.counters["input_nonzeros"] += int(np.count_nonzero(x_int))
    out.pieces.add(n, "input_q", xq)
    del xq
    cols = x_int.reshape(1, cin, h * w)
    for blk in blocks:
        acc, ovf = mac_array(p.weight_q[blk], cols, spec.mac)                                # 2. MAC
        acc = acc.reshape(1, -1, h, w)
        y, sat = _output_block(acc, blk, p.bias_q, p.out_qp, p.out_requant, p.out_scale,    # 3. bias,
                               spec.requant.mode, n, out)                                    #    requant
        out.counters.update(acc_overflows=ovf, output_saturations=sat)
        out.pieces.add(n, "acc", acc)
        yield blk, y
        del acc, y  # free this block before the next is made


def _plain_result(layer: _Layer, p: _PlainParams, spec: DatapathSpec, act_bits: int, weight_bits: int,
                  out: _Outcome) -> BaselineResult:
    """BaselineResult of a finished `_plain_image` loop."""
    stages = {}
    if out.pieces.keep:
        s_acc = p.in_qp.scale * p.weight_scale
        stages = {"input_q": _stage(out.pieces.join("input_q"), p.in_qp.bits, p.in_qp.signed, p.in_qp.scale,
                                    "N,C,H,W", p.in_qp.zero_point),
                  "weight_q": _stage(p.weight_q, weight_bits, True, p.weight_scale, "Cout,Cin"),
                  "acc": _stage(out.pieces.join("acc"), spec.mac.acc_bits, True, s_acc[None, :, :, None],
                                "N,Cout,H,W"),
                  **_output_stages(out.pieces, spec.mac.acc_bits, p.bias_q, p.in_qp.scale, p.weight_scale,
                                   p.out_qp, p.out_scale)}
    counters = {"acc_overflows": out.counters["acc_overflows"], "bias_saturations": p.bias_saturations,
                "output_saturations": out.counters["output_saturations"]}
    return BaselineResult(out.y, out.stats(), act_bits, weight_bits, stages, counters, layer.output_shape,
                          out.counters["input_nonzeros"] / layer.xs.size)


def simulate_plain(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, act_bits: int,
                   stride: int = 1, keep: bool = True) -> BaselineResult:
    """Plain quantized 1x1 conv (no Haar) with ``act_bits`` input activations.

    Parameters
    ----------
    x : (N, Cin, H, W) float
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
        Weights use ``spec.quant.weight_bits``; the output register ``spec.quant.act_bits``.
    act_bits : int
        Input activation bits, 2..16.
    stride : int
    keep : bool
        Keep the output and the stages (False: errors and counters only, bounded memory).

    Returns
    -------
    BaselineResult
        Output (N, Cout, Ho, Wo) float64, ``errors['total']`` vs ``ref_conv``, stages input_q, weight_q,
        acc (N,Cout,H,W), bias_q, pre_requant, output_q.
    """
    act_bits = _check_bits("act_bits", act_bits)
    layer = _prepare(x, w, b, stride)
    out_qp = _output_params(layer, spec.quant.act_bits, spec)
    p = _plain_params(layer, spec, act_bits, spec.quant.weight_bits, out_qp)
    out = _Outcome(keep, layer.output_shape)
    for n in range(layer.xs.shape[0]):
        x_n = layer.image(n)
        for blk, y in _plain_image(n, x_n, layer.blocks(), p, spec, out):
            out.error("total", layer.ref_block(x_n, blk), y)
    return _plain_result(layer, p, spec, act_bits, spec.quant.weight_bits, out)


# ------------------------------------------------------------------------------- WCC: stages 1-4a

@dataclass(frozen=True)
class _Front:
    """Stages 1 to 4a of one image (quantize, Haar, top-k, gather), shared by calibration and datapath.

    ``sel`` its selection (bitmap (1, P), idx (1, k)); ``kept`` (1, C, k) kept columns (narrowest integer
    dtype holding haar.width_bits);
    ``kept_level`` (1, 1, k) int64 their Haar level (1..L); ``kept_scale`` (1, 1, k) float64 their real
    units; ``shape`` (h, w) strided spatial size; ``pieces`` the stage values (input_q, haar_l<l>,
    haar_coef, energy, bitmap, kept) when kept.
    """
    sel: topk.Selection
    kept: np.ndarray
    kept_level: np.ndarray
    kept_scale: np.ndarray
    positions: int
    shape: tuple
    haar_saturations: int
    pieces: dict


def _level_scales(in_scale: float, hs) -> np.ndarray:
    """(L,) float64 real units of the level-l coefficients (entry l-1): ``in_scale / 2^l`` when deferred."""
    if hs.normalize is Normalize.DEFERRED:
        return in_scale / np.exp2(np.arange(1, hs.levels + 1))
    return np.full(hs.levels, in_scale)


def _position_scales(in_scale: float, spec: DatapathSpec, hp: int, wp: int) -> np.ndarray:
    """(P,) float64 real units of each Haar position (layout order)."""
    return _level_scales(in_scale, spec.haar)[haar.position_levels(hp, wp, spec.haar.levels) - 1]


def _energy_shift(hp: int, wp: int, spec: DatapathSpec):
    if spec.haar.normalize is Normalize.DEFERRED:
        return topk.deferred_level_shift(hp, wp, spec.haar.levels, spec.topk.metric)
    return None


def _energy_bits(channels: int, spec: DatapathSpec, shift) -> int:
    """Unsigned width of the worst-case energy of ``channels`` coefficients of haar.width_bits."""
    peak = 1 << (spec.haar.width_bits - 1)
    metric = spec.topk.metric
    worst = channels * peak * peak if metric is Metric.L2 else channels * peak if metric is Metric.L1 else peak
    if shift is not None:
        worst <<= int(np.max(shift, initial=0))
    return worst.bit_length()


def _front(x_n: np.ndarray, in_qp: QuantParams, spec: DatapathSpec, rate: float, keep: bool) -> _Front:
    """Stages 1-4a on one strided image ``x_n`` (1, C, H, W) float: quantize, Haar, top-k, gather."""
    hs = spec.haar
    xq, x_int = _quantize_input(x_n, in_qp)                                                 # 1. input
    fwd = haar.forward_int(x_int, hs, spec.quant.act_bits + (0 if in_qp.signed else 1))      # 2. Haar
    hp, wp = haar.pad_shape(x_n.shape[2], x_n.shape[3], hs.levels)
    shift = _energy_shift(hp, wp, spec)
    e = topk.energy(fwd.coef, spec.topk.metric, shift)                                      # 3. top-k
    sel = topk.select(e, topk.num_kept(rate, hp * wp), spec.topk)
    kept = topk.gather(fwd.coef, sel.idx, _int_dtype(hs.width_bits))                        # 4a. gather
    lev = haar.position_levels(hp, wp, hs.levels)[sel.idx][:, None, :]
    pieces = {}
    if keep:
        pieces = {"input_q": xq, **{f"haar_l{i + 1}": band for i, band in enumerate(fwd.per_level)},
                  "haar_coef": fwd.coef, "energy": e, "bitmap": sel.bitmap.astype(np.int64), "kept": kept}
    kept_scale = _level_scales(in_qp.scale, hs)[lev - 1]
    return _Front(sel, kept, lev, kept_scale, hp * wp, x_n.shape[2:], fwd.saturations, pieces)


def _fronts(layer: _Layer, in_qp: QuantParams, spec: DatapathSpec, rate: float, keep: bool) -> list[_Front]:
    return [_front(layer.image(n), in_qp, spec, rate, keep) for n in range(layer.xs.shape[0])]


def _front_stages(fronts: list[_Front], in_qp: QuantParams, spec: DatapathSpec) -> dict:
    """Stages input_q, haar_l<l>, haar_coef, energy, bitmap, kept from the images' pieces."""
    hs = spec.haar
    pieces = _Pieces(True)
    for n, f in enumerate(fronts):
        for name, v in f.pieces.items():
            pieces.add(n, name, v)
    hp, wp = haar.pad_shape(*fronts[0].shape, hs.levels)
    deferred = hs.normalize is Normalize.DEFERRED
    shift = _energy_shift(hp, wp, spec)
    channels = fronts[0].kept.shape[1]
    stages = {"input_q": _stage(pieces.join("input_q"), in_qp.bits, in_qp.signed, in_qp.scale, "N,C,H,W",
                                in_qp.zero_point)}
    stages.update({f"haar_l{i}": _stage(pieces.join(f"haar_l{i}"), hs.width_bits, True,
                                        in_qp.scale / 2.0 ** i if deferred else in_qp.scale, "N,C,4,h,w")
                   for i in range(1, hs.levels + 1)})
    stages["haar_coef"] = _stage(pieces.join("haar_coef"), hs.width_bits, True,
                                 _position_scales(in_qp.scale, spec, hp, wp), "N,C,P")
    stages["energy"] = _stage(np.concatenate([f.pieces["energy"] for f in fronts]),
                              _energy_bits(channels, spec, shift), False, None, "N,P")
    stages["bitmap"] = _stage(np.concatenate([f.pieces["bitmap"] for f in fronts]), 1, False, None, "N,P")
    stages["kept"] = _stage(pieces.join("kept"), hs.width_bits, True,
                            np.concatenate([f.kept_scale for f in fronts]), "N,C,k")
    return stages


# ------------------------------------------------------------------------------ WCC: calibration

@dataclass(frozen=True)
class LayerParams:
    """Offline record of one layer: everything the integer datapath needs, made in float by `calibrate_layer`.

    Attributes
    ----------
    input_qp : QuantParams
        Input quantizer (``act_bits``, ``spec.quant`` sign and method), calibrated on the whole input.
    weight_q : (Cout, Cin) int64
        Weights, ``weight_bits`` signed symmetric.
    weight_scale : (Cout, 1) float64
        Real units of one weight step (all rows equal per tensor).
    coef_qp : QuantParams
        Coefficient quantizer (``act_bits`` signed, orthonormal units), calibrated on the kept coefficients.
    coef_requant : RequantParams
        ``FIXED_POINT`` record per Haar level, fields shaped (L,): entry ``l-1`` maps level-l coefficients
        (``haar.width_bits``) to ``coef_qp``.
    bias_q : (Cout,) int64
        Bias at scale ``coef_qp.scale * weight_scale``, saturated to int32.
    bias_saturations : int
        Bias values clipped to int32 by that rounding.
    output_qp : QuantParams
        Output quantizer (``act_bits``, sign from the data), calibrated on ``ref_conv``'s output.
    output_requant : RequantParams
        Output record, fields (1, Cout, 1, 1) against (N, Cout, H, W) integers at
        ``coef_qp.scale * weight_scale``.
    """
    input_qp: QuantParams
    weight_q: np.ndarray
    weight_scale: np.ndarray
    coef_qp: QuantParams
    coef_requant: RequantParams
    bias_q: np.ndarray
    bias_saturations: int
    output_qp: QuantParams
    output_requant: RequantParams


def _calibrate(layer: _Layer, spec: DatapathSpec, rate: float, keep: bool) -> tuple[LayerParams, list]:
    """`calibrate_layer` on a prepared layer; also returns the images' stages 1-4a it had to compute."""
    q = spec.quant
    in_qp = _input_params(layer.x, q.act_bits, spec)
    fronts = _fronts(layer, in_qp, spec, rate, keep)
    sample = CalibSample(sum(f.kept.size for f in fronts), q.calib)
    for f in fronts:
        sample.add(f.kept * f.kept_scale)                                                   # real units
    cqp = sample.params(q.act_bits, ActSign.SIGNED, q.percentile)
    coef_requant = requant_params(_level_scales(in_qp.scale, spec.haar), cqp, in_bits=min(spec.haar.width_bits, 32))
    wq, s_w = _quantize_weights(layer.w2, q.weight_bits, spec)
    bq, bias_sat = _quantize_bias(layer.b, cqp.scale * s_w, wq.shape[0])
    out_qp = _output_params(layer, q.act_bits, spec)
    params = LayerParams(in_qp, wq, s_w, cqp, coef_requant, bq, bias_sat, out_qp,
                         _output_requant(cqp.scale, s_w, out_qp))
    return params, fronts


def calibrate_layer(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                    stride: int = 1) -> LayerParams:
    """Calibrate one 1x1 conv layer offline (float) for `run_datapath`.

    The coefficient scale is calibrated on the real values of the coefficients the datapath keeps, so
    this runs stages 1-4a (quantize, Haar, top-k, gather) on ``x``; the output scale on ``ref_conv``'s
    output (float64). Module docstring: the calibration choices.

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Calibration input (real units).
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions.
    stride : int
        1x1 conv stride.

    Returns
    -------
    LayerParams
    """
    return _calibrate(_prepare(x, w, b, stride), spec, rate, False)[0]


# ------------------------------------------------------------------------------- WCC: stages 4b-8

@dataclass(frozen=True)
class DatapathResult:
    """Integer WCC datapath result (`run_datapath`).

    Attributes
    ----------
    y : (N, Cout, Ho, Wo) float64 or None
        Dequantized datapath output (None from ``simulate_layer(..., keep=False)``).
    stages : dict[str, Stage]
        Every stage in hardware order (module docstring); empty unless kept.
    k, positions : int
        Kept and padded positions per image.
    selection : topk.Selection
        Datapath selection (bitmap, idx).
    counters : dict[str, int]
        haar_saturations, coef_saturations, acc_overflows, inverse_saturations, bias_saturations (offline,
        from `LayerParams`), output_saturations.
    output_shape : tuple
        (N, Cout, Ho, Wo).
    """
    y: np.ndarray | None
    stages: dict
    k: int
    positions: int
    selection: topk.Selection
    counters: dict
    output_shape: tuple


@dataclass(frozen=True)
class LayerResult(DatapathResult):
    """WCC layer result: `DatapathResult` plus the comparisons with the float references and baselines.

    Attributes
    ----------
    errors : dict[str, ErrorStats]
        'compress' (ref_wcc vs ref_conv), 'quant' (datapath vs ref_wcc), 'total' (datapath vs ref_conv).
    topk_overlap_with_ref : float
        Fraction of the datapath's kept positions that the float reference keeps too.
    baselines : dict[str, BaselineResult]
        'int8' and 'uniform_nbit'.
    """
    errors: dict
    topk_overlap_with_ref: float
    baselines: dict


def _at_levels(rp: RequantParams, level: np.ndarray) -> RequantParams:
    """The per-level record ``rp`` (fields shaped (L,)) picked at each ``level`` (1..L, any shape)."""
    i = level - 1
    return replace(rp, multiplier=rp.multiplier[i], left_shift=rp.left_shift[i], shift=rp.shift[i],
                               real_scale=rp.real_scale[i], float_scale=rp.float_scale[i],
                               pow2_shift=rp.pow2_shift[i])


def _inverse_width(spec: DatapathSpec) -> int:
    """Register width of the inverse Haar unit: acc_bits + L (per_level) or + 2L (deferred)."""
    return spec.mac.acc_bits + (1 if spec.haar.normalize is Normalize.PER_LEVEL else 2) * spec.haar.levels


def _wcc_image(n: int, front: _Front, blocks: list, p: LayerParams, spec: DatapathSpec, out: _Outcome):
    """Stages 4b-8 of image ``n`` with the offline record ``p``: coef requant and MAC for the image, then
    per channel block zero-fill, inverse Haar, bias + requant; yields (blk, dequantized output block)."""
    cq, coef_sat = requantize(front.kept, _at_levels(p.coef_requant, front.kept_level),            # 4b.
                              RequantMode.FIXED_POINT)
    acc, ovf = mac_array(p.weight_q, cq, spec.mac)                                                # 5. MAC
    out.counters.update(haar_saturations=front.haar_saturations, coef_saturations=coef_sat, acc_overflows=ovf)
    out.pieces.add(n, "coef_q", cq)
    out.pieces.add(n, "acc", acc)
    out_scale = _output_scale(p.coef_qp.scale, p.weight_scale, p.output_qp, p.output_requant, spec.requant.mode)
    width = _inverse_width(spec)
    for blk in blocks:
        spatial, inv_sat = haar.inverse_kept(acc[:, blk], front.sel.idx, *front.shape, spec.haar, width)  # 6-7.
        y, out_sat = _output_block(spatial, blk, p.bias_q, p.output_qp, p.output_requant, out_scale,      # 8.
                                   spec.requant.mode, n, out)
        out.counters.update(inverse_saturations=inv_sat, output_saturations=out_sat)
        if out.pieces.keep:
            zf = np.zeros(acc[:, blk].shape[:2] + (front.positions,), dtype=np.int64)
            np.put_along_axis(zf, front.sel.idx[:, None, :], acc[:, blk], axis=2)
            out.pieces.add(n, "zero_filled", zf)
            out.pieces.add(n, "inverse", spatial)
        yield blk, y
        del spatial, y  # free this block before the next is made


def _wcc_result(cls, fronts: list[_Front], p: LayerParams, spec: DatapathSpec, out: _Outcome, layer: _Layer,
                **extra):
    """`DatapathResult` (or `LayerResult` with ``extra``) of a finished `_wcc_image` loop."""
    q = spec.quant
    stages = {}
    if out.pieces.keep:
        s_acc = p.coef_qp.scale * p.weight_scale
        out_scale = _output_scale(p.coef_qp.scale, p.weight_scale, p.output_qp, p.output_requant,
                                  spec.requant.mode)
        stages = {**_front_stages(fronts, p.input_qp, spec),
                  "coef_q": _stage(out.pieces.join("coef_q"), q.act_bits, True, p.coef_qp.scale, "N,C,k"),
                  "weight_q": _stage(p.weight_q, q.weight_bits, True, p.weight_scale, "Cout,Cin"),
                  "acc": _stage(out.pieces.join("acc"), spec.mac.acc_bits, True, s_acc[None, :, :], "N,Cout,k"),
                  "zero_filled": _stage(out.pieces.join("zero_filled"), spec.mac.acc_bits, True, s_acc[None, :, :],
                                        "N,Cout,P"),
                  "inverse": _stage(out.pieces.join("inverse"), _inverse_width(spec), True,
                                    s_acc[None, :, :, None], "N,Cout,H,W"),
                  **_output_stages(out.pieces, _inverse_width(spec), p.bias_q, p.coef_qp.scale, p.weight_scale,
                                   p.output_qp, out_scale)}
    sel = _selection([f.sel for f in fronts])
    counters = {name: int(out.counters[name]) for name in
                ("haar_saturations", "coef_saturations", "acc_overflows", "inverse_saturations")}
    counters.update(bias_saturations=p.bias_saturations, output_saturations=int(out.counters["output_saturations"]))
    return cls(out.y, stages, sel.k, fronts[0].positions, sel, counters, layer.output_shape, **extra)


def _selection(images: list) -> topk.Selection:
    """The images' selections as one batch."""
    return topk.Selection(np.concatenate([s.bitmap for s in images]), np.concatenate([s.idx for s in images]),
                          images[0].k)


def _check_params(params: LayerParams, spec: DatapathSpec, cin: int) -> None:
    """``params`` must be made for ``spec`` (act_bits, haar.levels) and this layer's Cin."""
    if params.weight_q.shape[1] != cin:
        raise InputError(_WHERE, "x", f"a non-empty (N, {params.weight_q.shape[1]}, H, W) array", cin)
    made_for = (params.input_qp.bits, params.coef_qp.bits, np.shape(params.coef_requant.multiplier))
    if made_for != (spec.quant.act_bits,) * 2 + ((spec.haar.levels,),):
        raise InputError(_WHERE, "params", "calibrated for this spec (act_bits, haar.levels)", made_for)


def run_datapath(x: np.ndarray, params: LayerParams, spec: DatapathSpec, rate: float,
                 stride: int = 1, keep: bool = True) -> DatapathResult:
    """Run the integer WCC datapath (stages 1-8) on ``x`` with fixed, offline parameters.

    Only integer stages run (quantize, Haar, top-k, gather + coefficient requant, MAC, zero-fill,
    inverse Haar, bias + requant): no calibration, float reference or baseline. ``params`` may come from
    another tensor of the same layer (fixed scales, as a chip has them).

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Input activations (real units).
    params : LayerParams
        From `calibrate_layer` with the same ``spec``.
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions, ``k = max(1, floor(rate * P))``.
    stride : int
        1x1 conv stride (the input is subsampled first).
    keep : bool
        Record the stages (False: output, selection and counters only).

    Returns
    -------
    DatapathResult
    """
    x = np.asarray(x)
    if x.ndim != 4 or 0 in x.shape:
        raise InputError(_WHERE, "x", f"a non-empty (N, {params.weight_q.shape[1]}, H, W) array", x.shape)
    _check_params(params, spec, x.shape[1])
    layer = _prepare(x, params.weight_q, None, stride)
    return _run(layer, params, _fronts(layer, params.input_qp, spec, rate, keep), spec, keep)


def calibrate_and_run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                      stride: int = 1, keep: bool = True) -> tuple[LayerParams, DatapathResult]:
    """`calibrate_layer` then `run_datapath` on the same ``x``, with stages 1-4a run once (calibration
    needs them): the output `simulate_layer` gives, without its references and baselines.

    Parameters and ``keep`` as in `simulate_layer`.

    Returns
    -------
    (LayerParams, DatapathResult)
    """
    layer = _prepare(x, w, b, stride)
    params, fronts = _calibrate(layer, spec, rate, keep)
    return params, _run(layer, params, fronts, spec, keep)


def _run(layer: _Layer, params: LayerParams, fronts: list[_Front], spec: DatapathSpec, keep: bool) -> DatapathResult:
    """Stages 4b-8 of every image from its stages 1-4a (``fronts``); the output is always kept."""
    out = _Outcome(keep, layer.output_shape, keep_y=True)
    for n, front in enumerate(fronts):
        for _ in _wcc_image(n, front, layer.blocks(), params, spec, out):
            pass  # each block's output lands in out.y
    return _wcc_result(DatapathResult, fronts, params, spec, out, layer)


def _compare_image(n: int, layer: _Layer, front: _Front, rate: float, params: LayerParams, plain_params: dict,
                   spec: DatapathSpec, wcc: _Outcome, bases: dict) -> topk.Selection:
    """Image ``n``, channel block by channel block: ``ref_conv``, ``ref_wcc``, the datapath (4b-8) and the
    baselines, compared as they go; returns the float reference's selection (one function per image, so
    that its arrays are freed before the next image)."""
    x_n = layer.image(n)
    dropped, ref_sel = wcc_dropped(x_n, rate, spec.haar.levels, spec.topk.metric)[:2]
    dropped = dropped.reshape(x_n.shape[1], -1)
    blocks = layer.blocks()
    schemes = [_wcc_image(n, front, blocks, params, spec, wcc)] + \
        [_plain_image(n, x_n, blocks, p, spec, bases[name]) for name, p in plain_params.items()]
    for (blk, y), *base_blocks in zip(*schemes):
        y_ref = layer.ref_block(x_n, blk)
        y_rw = y_ref - np.matmul(layer.w2[blk], dropped).reshape(y_ref.shape)
        wcc.error("compress", y_ref, y_rw)
        wcc.error("quant", y_rw, y)
        wcc.error("total", y_ref, y)
        for name, (_, y_b) in zip(plain_params, base_blocks):
            bases[name].error("total", y_ref, y_b)
        del y_ref, y_rw, y, base_blocks, y_b  # free this block before the next is made
    return ref_sel


def simulate_layer(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                   stride: int = 1, keep: bool = True) -> LayerResult:
    """Simulate one 1x1 conv layer through the bit-accurate WCC datapath, with references and baselines.

    ``calibrate_layer`` on ``x`` then ``run_datapath`` on ``x``, except that stages 1-4a run once:
    calibration needs them (the coefficient scale) and hands them to stages 4b-8. Then image by image and
    channel block by channel block: ``ref_conv``, ``ref_wcc`` (`wccsim.reference.wcc_dropped`), the
    datapath and the baselines 'int8' and 'uniform_nbit' (`uniform_bits` inputs), compared as they go.

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Input activations (real units).
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions, ``k = max(1, floor(rate * P))``.
    stride : int
        1x1 conv stride (the input is subsampled first).
    keep : bool
        Keep outputs and stages (False: errors, counters and selection only, bounded memory).

    Returns
    -------
    LayerResult
    """
    layer = _prepare(x, w, b, stride)
    params, fronts = _calibrate(layer, spec, rate, keep)                                   # calibration, 1-4a
    q = spec.quant
    plains = {"int8": (8, 8), "uniform_nbit": (uniform_bits(rate, q.act_bits), q.weight_bits)}
    plain_params = {name: _plain_params(layer, spec, a, wb, params.output_qp) for name, (a, wb) in plains.items()}
    wcc, bases = _Outcome(keep, layer.output_shape), {name: _Outcome(keep, layer.output_shape) for name in plains}
    refs = [_compare_image(n, layer, front, rate, params, plain_params, spec, wcc, bases)
            for n, front in enumerate(fronts)]
    baselines = {name: _plain_result(layer, plain_params[name], spec, *plains[name], bases[name]) for name in plains}
    overlap = topk.overlap(_selection([f.sel for f in fronts]), _selection(refs))
    return _wcc_result(LayerResult, fronts, params, spec, wcc, layer, errors=wcc.stats(),
                       topk_overlap_with_ref=overlap, baselines=baselines)

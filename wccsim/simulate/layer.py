"""A validated 1x1 conv layer as the simulation walks it: image by image, output-channel block by block,
and the output stage (bias, requantization, dequantization, the count of output integers that differ from a
framework's) every scheme shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wccsim.datapath.chain import bias_requant, channels
from wccsim.datapath.requant import RequantParams, bias_requant_dequant
from wccsim.hw import RequantMode
from wccsim.reference import conv_args, ref_conv
from wccsim.simulate.record import Outcome, Pieces, make_stage

__all__ = ["Layer", "prepare", "output_block", "output_stages", "BIAS_BITS", "RUN_BLOCK_ELEMS"]

BIAS_BITS = 32
_BLOCK_ELEMS = 1 << 16  # outputs per channel block: 512 KiB per float64 block array (cache-sized; bounds the
#                         working set of the comparisons, `simulate_layer`)
RUN_BLOCK_ELEMS = 1 << 18  # the same for `run_datapath` / `run_plain`, which keep the whole output anyway:
#                            fewer blocks, less per-block Python (a 256x256 map is 2^16 outputs per channel;
#                            2^16 was 5-7 % slower per image on LR-ASPP)


@dataclass(frozen=True)
class Layer:
    """A validated 1x1 conv: the input as given (float dtype kept), its strided view (N, Cin, H, W),
    weights (Cout, Cin) float64, bias (Cout,) float64 or None."""
    x: np.ndarray
    xs: np.ndarray
    w2: np.ndarray
    b: np.ndarray | None

    def image(self, n: int) -> np.ndarray:
        """Strided image ``n`` as (1, Cin, H, W) float64."""
        return np.ascontiguousarray(self.xs[n:n + 1], dtype=np.float64)

    def codes_input(self, n: int) -> np.ndarray:
        """Strided image ``n`` as (1, Cin, H, W) in the input's own float dtype: what the input quantizer
        reads (`wccsim.calibrate.quantize` widens each value to float64 itself, exactly)."""
        return self.xs[n:n + 1]

    def blocks(self, elems: int | None = None) -> list[slice]:
        """Output channel blocks of about ``elems`` outputs each (default `_BLOCK_ELEMS`; at least one
        channel)."""
        cout, hw = self.w2.shape[0], self.xs.shape[2] * self.xs.shape[3]
        step = max(1, min(cout, (elems or _BLOCK_ELEMS) // max(1, hw)))
        return [slice(c, min(c + step, cout)) for c in range(0, cout, step)]

    def ref_block(self, x_n: np.ndarray, blk: slice) -> np.ndarray:
        """``ref_conv`` output channels ``blk`` of the image ``x_n`` (1, Cin, H, W): (1, B, H, W) float64."""
        return ref_conv(x_n, self.w2[blk], None if self.b is None else self.b[blk])

    @property
    def output_shape(self) -> tuple:
        n, _, h, w = self.xs.shape
        return (n, self.w2.shape[0], h, w)


def prepare(x, w, b, stride: int) -> Layer:
    """Validate a 1x1 conv's arguments (`wccsim.reference.conv_args`) and subsample the input by the stride."""
    x, w2, b = conv_args(x, w, b, stride)
    return Layer(x, x[:, :, ::stride, ::stride], w2, b)


def output_block(acc_spatial: np.ndarray, blk: slice, bias_q: np.ndarray, zero_point: int, rp: RequantParams,
                 out_scale, mode: RequantMode, n: int, out: Outcome) -> tuple[np.ndarray, int]:
    """Stage 8 for output channels ``blk`` of image ``n`` (integers (1, B, H, W)); records pre_requant and
    output_q and returns the dequantized block (float64, written into the kept output when there is one)
    and the saturations. When nothing is recorded or compared, with ``FIXED_POINT`` requantization, the three
    steps run as one pass (`wccsim.datapath.requant.bias_requant_dequant`: the same integers and counts);
    otherwise the bias is added in place when nothing is recorded and the integers are int64."""
    scale = out_scale[:, blk] if np.ndim(out_scale) else out_scale
    rp_blk = channels(rp, blk)
    if not out.pieces.keep and out.expect_q is None and mode is RequantMode.FIXED_POINT:
        dest = out.dest(n, blk, acc_spatial.shape)
        sat = bias_requant_dequant(acc_spatial, bias_q[blk], rp_blk, zero_point, scale, dest)
        if sat is not None:
            return dest, sat
    in_place = not out.pieces.keep and acc_spatial.dtype == np.int64
    pre, q, sat = bias_requant(acc_spatial, bias_q[blk], rp_blk, mode, in_place)
    out.mismatches(n, blk, q)
    out.pieces.add(n, "pre_requant", pre)
    out.pieces.add(n, "output_q", q)
    return np.multiply(q - zero_point if zero_point else q, scale, out=out.dest(n, blk, q.shape)), sat


def output_stages(pieces: Pieces, acc_bits: int, bias_q: np.ndarray, act_scale: float, weight_scale: np.ndarray,
                  out_qp, out_scale) -> dict:
    """Stages bias_q, pre_requant, output_q from the recorded pieces (``weight_scale`` (Cout, 1))."""
    s4 = act_scale * weight_scale[None, :, :, None]
    return {"bias_q": make_stage(bias_q, BIAS_BITS, True, act_scale * weight_scale[:, 0], "Cout"),
            "pre_requant": make_stage(pieces.join("pre_requant"), max(acc_bits, BIAS_BITS) + 1, True, s4,
                                      "N,Cout,H,W"),
            "output_q": make_stage(pieces.join("output_q"), out_qp.bits, out_qp.signed, out_scale, "N,Cout,H,W",
                                   out_qp.zero_point)}

"""The WCC compressor of one layer's input: forward Haar, joint top-k and bitmap, what its selector must
hold on chip before it can emit, and the spill to DRAM when that does not fit (docs/cost.md).

Where it runs (`by_producer`): under ``compress_on_write`` on the hardware of the layer that produces the
tensor (its selector holds the data in the ofmap SRAM), under ``compress_on_read`` on the consuming layer's
(in the ifmap SRAM). The inverse Haar always runs on the consuming layer (after its MAC array).

- Widths (`coef_bytes`): coefficients are stored as they leave the coefficient quantizer, LL_L positions at
  ``coef.ll_bits`` and detail positions at ``coef.bits`` (both default to the scheme's ``act_bits``). Which
  positions the top-k keeps depends on the data; the model takes the LL_L positions as kept first (all of
  them when ``k >= P_LL``): measured on the bundled PP-OCRv4 trace (every third layer, rates 0.5 and 0.25),
  the datapath kept every LL_L position in 16 of 16 cases.
- Buffer (``buffer_bytes``): an exact or threshold top-k knows the first kept column only after the energy
  of every position is known, so it holds every position's coefficients (``cin x P`` at their band widths:
  they are requantized as they leave the Haar unit, as stored) and energies (``P`` at `energy_bits`); ``tiled``
  selects within tiles of ``T = topk.tile_positions`` positions and holds one tile (``cin x T`` + ``T``).
- Spill, when the buffer exceeds the SRAM: on the producer, the coefficients are written to DRAM as they
  are made (full write), read back once the energies have given the selection (full read) and the kept
  columns written (the compressed write, counted as the tensor's stored size, not here); a producer that
  writes the full tensor anyway (for its other readers) reads that back instead and runs the Haar unit on
  it again, writing no coefficients; on the consumer,
  the input (already in DRAM) is read a second time and run through the Haar unit again (energy pass,
  then select pass). The energies stay on chip when they fit the SRAM, else they are written and read
  back too.
- Work: Haar forward ``2 * level_sum * cin * P`` adds (twice when a spill re-reads the input), ``cin * P``
  metric ops, ``P`` compares per selection pass (2 passes for ``threshold``); cycles at the units'
  ``elems_per_cycle``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from wccsim.cost.timing import haar_unit_cycles, topk_cycles
from wccsim.hw import HwSpec, Metric, Normalize, TopkMode
from wccsim.rules import band_shapes, level_sum
from wccsim.shape import LayerShape

__all__ = ["Compression", "energy_bits", "coef_widths", "coef_bytes", "compression"]


@dataclass(frozen=True)
class Compression:
    """The compression of one WCC layer's input, wherever it runs (module docstring). Bytes are DRAM or
    SRAM bytes as named; cycles are the Haar and top-k units' on the hardware that runs it."""
    by_producer: bool
    payload_bytes: int         # kept columns cin x k at their band widths (`coef_bytes`), as stored in DRAM
    bitmap_bytes: int          # P-bit bitmap
    kept_elems: int            # cin x k
    buffer_bytes: int          # what the selector holds before it can emit
    sram_bytes: int            # capacity of the SRAM that holds it
    spill_write_bytes: int     # coefficients and energies the spill writes to DRAM (0 when the buffer fits)
    spill_read_bytes: int      # and reads back
    input_passes: int          # the consumer's passes over its input (2 when it selects on read and spills)
    haar_cycles: int           # forward Haar (all passes)
    topk_cycles: int
    haar_adds: int
    metric_ops: int
    compares: int

    @property
    def spill(self) -> bool:
        return self.buffer_bytes > self.sram_bytes

    @property
    def stored_bytes(self) -> int:
        """The compressed tensor in DRAM: kept columns + bitmap."""
        return self.payload_bytes + self.bitmap_bytes


def _bytes(elems: int, bits: int) -> int:
    return math.ceil(elems * bits / 8)


def energy_bits(cin: int, hw: HwSpec) -> int:
    """Width of one position's energy: coefficients of ``act_bits + levels * growth`` bits (growth 1 per
    level, 2 for ``deferred``; at most ``haar.width_bits``) squared (l2) or not (l1, linf), summed over
    ``cin`` channels (``ceil(log2 cin)`` carry bits; none for linf, a max)."""
    dp = hw.datapath
    growth = 2 if dp.haar.normalize is Normalize.DEFERRED else 1
    coef = min(dp.haar.width_bits, dp.quant.act_bits + dp.haar.levels * growth)
    if dp.topk.metric is Metric.LINF:
        return coef
    return (2 * coef if dp.topk.metric is Metric.L2 else coef) + math.ceil(math.log2(max(cin, 1)))


def coef_widths(hw: HwSpec, act_bits: int) -> tuple[int, int]:
    """(detail, LL_L) stored coefficient widths in bits of a WCC layer run at `act_bits`: ``coef.bits`` and
    ``coef.ll_bits`` with their defaults (`wccsim.hw.DatapathSpec.coef_bits`) taken at `act_bits`."""
    dp = hw.datapath
    dp = dataclasses.replace(dp, quant=dataclasses.replace(dp.quant, act_bits=act_bits))
    return dp.coef_bits, dp.coef_ll_bits


def coef_bytes(cin: int, positions: int, ll_positions: int, bits: int, ll_bits: int) -> int:
    """Bytes of `positions` coefficient columns of `cin` channels, `ll_positions` of them LL_L at `ll_bits`
    and the rest at `bits`: ``ceil(cin * (ll_positions * ll_bits + (positions - ll_positions) * bits) / 8)``."""
    return math.ceil(cin * (ll_positions * ll_bits + (positions - ll_positions) * bits) / 8)


def compression(shape: LayerShape, hw: HwSpec, rate: float, act_bits: int, by_producer: bool,
                written_full_bytes: int = 0) -> Compression:
    """The compression of the input of WCC layer `shape` (rules in the module docstring).

    Parameters
    ----------
    shape : LayerShape
        The consuming (WCC) layer; its ``ho x wo`` map is transformed.
    by_producer : bool
        True under ``compress_on_write`` (the producer's ofmap SRAM holds the selection).
    written_full_bytes : int
        The full tensor a producer writes anyway for other readers (0: none); its spill re-reads that.

    A consumer's second pass over its input is `input_passes`; the layer's traffic reads the input that
    many times (``spill_*_bytes`` are the coefficients and energies the spill moves besides).
    """
    dp = hw.datapath
    hp, wp = shape.wcc_grid(dp.haar.levels)
    p, k = hp * wp, shape.wcc_kept(rate, dp.haar.levels)
    p_ll = band_shapes(hp, wp, dp.haar.levels)[0][2]     # LL_L positions lead the layout
    bits, ll_bits = coef_widths(hw, act_bits)
    held = min(p, dp.topk.tile_positions) if dp.topk.mode is TopkMode.TILED else p
    held_ll = min(held, p_ll) if ll_bits >= bits else max(0, held - (p - p_ll))  # the tile needing most bytes
    ebits = energy_bits(shape.cin, hw)
    buffer = coef_bytes(shape.cin, held, held_ll, bits, ll_bits) + _bytes(held, ebits)
    sram = (hw.ofmap_sram if by_producer else hw.ifmap_sram).size_bytes
    spill = buffer > sram
    energies = _bytes(held, ebits) if spill and _bytes(held, ebits) > sram else 0
    reread = spill and (written_full_bytes > 0 or not by_producer)
    coefs = coef_bytes(shape.cin, p, p_ll, bits, ll_bits) if spill and by_producer and not reread else 0
    passes = 2 if reread else 1
    select = 2 if dp.topk.mode is TopkMode.THRESHOLD else 1
    return Compression(
        by_producer=by_producer, payload_bytes=coef_bytes(shape.cin, k, min(k, p_ll), bits, ll_bits),
        bitmap_bytes=_bytes(p, 1),
        kept_elems=shape.cin * k, buffer_bytes=buffer, sram_bytes=sram,
        spill_write_bytes=coefs + energies, input_passes=passes if not by_producer else 1,
        spill_read_bytes=coefs + energies + (written_full_bytes if reread and by_producer else 0),
        haar_cycles=passes * haar_unit_cycles(shape.cin, p, dp.haar), topk_cycles=topk_cycles(shape.cin, p, dp.topk),
        haar_adds=passes * round(2 * level_sum(dp.haar.levels) * shape.cin * p),
        metric_ops=shape.cin * p, compares=select * p)

"""Memory traffic of one layer in bytes: DRAM reads/writes per tensor and SRAM reads/writes per buffer.

Rules (docs/validation.md lists them with the tests that check them):

- Stored sizes come from the layer's `LayerIO` (`wccsim.cost.graph`: every tensor is written once in each
  form its readers need and read at that size; activations at the scheme's width, WCC's kept coefficients
  requantized to ``act_bits``, so no Haar width growth is stored); weights at ``weight_bits``. The layer reads its input per pass (a WCC layer that
  compresses on read and cannot hold its selection reads it twice: energy pass, select pass), a residual
  once, and writes every form of its output. The spill of each selection run on its hardware (its own
  under ``compress_on_read``, its consumers' under ``compress_on_write``) adds DRAM writes and reads
  (`wccsim.cost.selector`).
- Tiling: when neither the activations (as held in the ifmap SRAM) nor the weights fit their buffer, either
  the weights are split by output channel and the activations re-read once per weight tile, or the
  activations are split by position and the weights re-read once per activation tile, whichever moves
  fewer DRAM bytes; the choice is reported in ``tiling``. Outputs stream out once. Halo re-reads of k x k
  convolutions across activation tiles are not modeled.
- SRAM: buffers are filled with what crosses DRAM (ifmap: activations + bitmap, weight: weights); the array
  reads operands per dataflow fold (see ``array_reads``); partial sums are written/read at ``acc_bits`` when
  the reduction is folded; final outputs are written to the ofmap SRAM and read once to drain to DRAM. For
  WCC the accumulators of the k columns are kept and read once more by the inverse Haar unit, which writes
  the full-size output. A residual is written to the ofmap SRAM and read once for the add. Spills are
  DRAM traffic only (their SRAM accesses are not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wccsim.cost.graph import LayerIO
from wccsim.cost.workload import Gemm
from wccsim.shape import LayerShape
from wccsim.hw import HwSpec, MacSpec
from wccsim.rules import ARRAY_MAPPING

__all__ = ["Tensors", "Traffic", "tensor_bytes", "choose_tiling", "array_reads", "layer_traffic"]


def _bytes(elems: int | float, bits: int) -> int:
    return math.ceil(elems * bits / 8)


@dataclass(frozen=True)
class Tensors:
    """Byte sizes of one layer's tensors as they are stored (one read each, before tiling re-reads)."""
    act_dram_bytes: int      # activation payload read from DRAM per fetch (all passes included)
    bitmap_dram_bytes: int   # bitmap metadata read from DRAM per fetch
    act_sram_bytes: int      # what the ifmap SRAM holds: payload + bitmap
    stored_act_elems: int    # elements the ifmap SRAM payload represents
    weight_bytes: int
    output_bytes: int        # every stored form of the output
    act_passes: int          # passes over the input per fetch (2 for a selection that spills on read)
    residual_bytes: int      # residual tensor read once (fused add)
    spill_write_bytes: int   # spills of the selections run on this layer's hardware
    spill_read_bytes: int


def tensor_bytes(shape: LayerShape, io: LayerIO, weight_bits: int) -> Tensors:
    """Stored sizes of activations, bitmap, weights, outputs and spills of one layer (module doc)."""
    weight = _bytes(shape.cout * (shape.cin // shape.groups) * shape.kernel ** 2, weight_bits)
    sel = io.selection
    passes = sel.input_passes if sel else 1
    held = (sel.stored_bytes, sel.kept_elems) if sel else (io.input.total_bytes, io.input.elems)
    return Tensors(io.input.payload_bytes * passes, io.input.bitmap_bytes * passes, *held, weight,
                   io.output_bytes, passes, io.residual_bytes, sum(c.spill_write_bytes for c in io.run_here),
                   sum(c.spill_read_bytes for c in io.run_here))


def choose_tiling(act_sram_bytes: int, act_fetch_bytes: int, weight_bytes: int, ifmap_bytes: int,
                  weight_sram_bytes: int) -> tuple[int, int, str]:
    """Pick the loop order; return (activation fetches, weight fetches, description).

    `act_sram_bytes` is what must fit the ifmap SRAM, `act_fetch_bytes` what one activation fetch moves
    from DRAM (they differ under compress_on_read).
    """
    act_fits, w_fits = act_sram_bytes <= ifmap_bytes, weight_bytes <= weight_sram_bytes
    if act_fits and w_fits:
        return 1, 1, "act and weights resident"
    if act_fits:
        return 1, 1, "act resident, weights streamed once"
    if w_fits:
        return 1, 1, "weights resident, act streamed once"
    n_w = math.ceil(weight_bytes / weight_sram_bytes)
    n_a = math.ceil(act_sram_bytes / ifmap_bytes)
    if n_w * act_fetch_bytes + weight_bytes <= act_fetch_bytes + n_a * weight_bytes:
        return n_w, 1, f"weights in {n_w} tiles by cout, act re-read x{n_w}"
    return 1, n_a, f"act in {n_a} tiles by position, weights re-read x{n_a}"


def array_reads(gemm: Gemm, mac: MacSpec) -> tuple[int, int, int]:
    """Operand element reads by the MAC array and the reduction folds, from the dataflow's mapping.

    Each operand (ifmap m x k, weights k x n) is read once per fold of every array dimension it does not
    span (`wccsim.rules.ArrayMapping`): weight-stationary reads the ifmap ceil(n / cols) times and the
    weights once; output-stationary the ifmap ceil(n / cols) and the weights ceil(m / rows) times;
    input-stationary the ifmap once and the weights ceil(m / cols) times. Partial sums leave the array
    ``k_folds`` = ceil(k / rows) times when k is on the array (ws, is), once when it streams (os).

    Returns
    -------
    (ifmap_elems, weight_elems, k_folds)
    """
    mapping = ARRAY_MAPPING[mac.dataflow]
    dims = {"m": gemm.m, "k": gemm.k, "n": gemm.n}
    row_folds, col_folds = mapping.folds(dims, mac.rows, mac.cols)
    folds = {mapping.rows: row_folds, mapping.cols: col_folds}

    def reads(operand: str) -> int:
        rereads = math.prod(f for dim, f in folds.items() if dim not in operand)
        return gemm.groups * dims[operand[0]] * dims[operand[1]] * rereads

    return reads("mk"), reads("kn"), folds.get("k", 1)


@dataclass(frozen=True)
class Traffic:
    """Bytes moved by one layer (all fields in bytes except the fetch counts)."""
    act_read_bytes: int
    bitmap_bytes: int
    weight_read_bytes: int
    output_write_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    ifmap_sram_read_bytes: int
    ifmap_sram_write_bytes: int
    weight_sram_read_bytes: int
    weight_sram_write_bytes: int
    ofmap_sram_read_bytes: int
    ofmap_sram_write_bytes: int
    sram_read_bytes: int
    sram_write_bytes: int
    residual_read_bytes: int
    act_fetches: int         # DRAM passes over the input: tiling re-reads x top-k passes
    weight_fetches: int
    tiling: str


def layer_traffic(t: Tensors, gemm: Gemm, hw: HwSpec, wcc: bool, weight_bits: int) -> Traffic:
    """DRAM and per-buffer SRAM bytes of one layer from its tensor sizes and GEMM (rules in the module doc)."""
    n_act, n_w, tiling = choose_tiling(t.act_sram_bytes, t.act_dram_bytes + t.bitmap_dram_bytes,
                                       t.weight_bytes, hw.ifmap_sram.size_bytes, hw.weight_sram.size_bytes)
    if t.act_passes > 1:
        tiling += f"; {t.act_passes} passes over the input (top-k energy, then select)"
    act, bitmap, weight = n_act * t.act_dram_bytes, n_act * t.bitmap_dram_bytes, n_w * t.weight_bytes
    reads, writes = act + bitmap + weight + t.residual_bytes + t.spill_read_bytes, t.output_bytes + t.spill_write_bytes
    mac = hw.datapath.mac
    if_elems, w_elems, k_folds = array_reads(gemm, mac)
    acc = mac.acc_bits
    mn = gemm.m * gemm.n * gemm.groups
    if_read = math.ceil(if_elems * t.act_sram_bytes / t.stored_act_elems)
    w_read = _bytes(w_elems, weight_bits)
    psum_w = _bytes(mn * (k_folds if wcc else k_folds - 1), acc)
    psum_r = _bytes(mn * (k_folds if wcc else k_folds - 1), acc)  # WCC: + one read by the inverse Haar
    of_w = psum_w + t.output_bytes + t.residual_bytes
    of_r = psum_r + t.output_bytes + t.residual_bytes
    if_w = n_act * t.act_sram_bytes
    return Traffic(act, bitmap, weight, t.output_bytes, reads, writes,
                   if_read, if_w, w_read, weight, of_r, of_w,
                   if_read + w_read + of_r, if_w + weight + of_w, t.residual_bytes, n_act * t.act_passes, n_w,
                   tiling)

"""Memory traffic of one layer in bytes: DRAM reads/writes per tensor and SRAM reads/writes per buffer.

Rules (docs/validation.md lists them with the tests that check them):

- Tensor sizes are ``ceil(elements * bits / 8)`` bytes. Activations are stored at ``act_bits`` (``uniform_nbit``:
  at the effective width ``max(2, floor(rate * act_bits + 1/2))``, `uniform_bits`); outputs likewise; weights at ``weight_bits``.
- WCC (a 1x1 layer under scheme ``wcc``): the kept columns (``cin * k`` coefficients, requantized to
  ``act_bits``: the Haar unit's wider internal width is not stored, so there is no width growth in memory)
  plus a ``P``-bit bitmap of kept positions (P = padded positions). Placement ``compress_on_write``: the
  producer wrote that compressed form, so the layer reads it from DRAM. ``compress_on_read``: the layer
  reads the full tensor and compresses it on the way into the ifmap SRAM; with ``topk.mode`` exact or
  threshold and an input larger than the ifmap SRAM, the energy pass and the select pass each read it
  (2 passes); ``tiled`` needs one.
- ZVC: the non-zero values (``round(nonzero_fraction * elements)``) plus a 1-bit-per-element bitmap.
- Tiling: when neither the activations (as held in the ifmap SRAM) nor the weights fit their buffer, either
  the weights are split by output channel and the activations re-read once per weight tile, or the
  activations are split by position and the weights re-read once per activation tile, whichever moves
  fewer DRAM bytes; the choice is reported in ``tiling``. Outputs stream out once. Halo re-reads of k x k
  convolutions across activation tiles are not modeled.
- SRAM: buffers are filled with what crosses DRAM (ifmap: activations + bitmap, weight: weights); the array
  reads operands per dataflow fold (see ``array_reads``); partial sums are written/read at ``acc_bits`` when
  the reduction is folded; final outputs are written to the ofmap SRAM and read once to drain to DRAM. For
  WCC the accumulators of the k columns are kept and read once more by the inverse Haar unit, which writes
  the full-size output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wccsim.cost.workload import Gemm, Scheme
from wccsim.shape import LayerShape
from wccsim.hw import HwSpec, MacSpec, Placement, TopkMode
from wccsim.rules import ARRAY_MAPPING, uniform_bits

__all__ = ["Tensors", "Traffic", "effective_act_bits", "tensor_bytes", "choose_tiling", "array_reads",
           "layer_traffic"]


def _bytes(elems: int | float, bits: int) -> int:
    return math.ceil(elems * bits / 8)


def effective_act_bits(scheme: Scheme, rate: float, act_bits: int) -> int:
    """Activation width the scheme stores: `wccsim.rules.uniform_bits` for uniform_nbit
    (``max(2, floor(rate * act_bits + 1/2))``), else act_bits."""
    return uniform_bits(rate, act_bits) if scheme is Scheme.UNIFORM_NBIT else act_bits


@dataclass(frozen=True)
class Tensors:
    """Byte sizes of one layer's tensors as they are stored (one read each, before tiling re-reads)."""
    act_dram_bytes: int      # activation payload read from DRAM per fetch (all passes included)
    bitmap_dram_bytes: int   # bitmap metadata read from DRAM per fetch
    act_sram_bytes: int      # what the ifmap SRAM holds: payload + bitmap
    stored_act_elems: int    # elements the ifmap SRAM payload represents
    weight_bytes: int
    output_bytes: int
    act_passes: int          # DRAM passes over the input (2 for an exact top-k that cannot buffer)


def tensor_bytes(shape: LayerShape, scheme: Scheme, rate: float, act_bits: int, weight_bits: int,
                 hw: HwSpec, wcc: bool, nonzero_fraction: float | None) -> Tensors:
    """Stored sizes of activations, bitmap, weights and outputs of one layer (rules in the module doc)."""
    a = effective_act_bits(scheme, rate, act_bits)
    full_elems = shape.cin * shape.h * shape.w
    weight = _bytes(shape.cout * (shape.cin // shape.groups) * shape.kernel ** 2, weight_bits)
    out = _bytes(shape.cout * shape.ho * shape.wo, a)
    if wcc:
        levels = hw.datapath.haar.levels
        hp, wp = shape.wcc_grid(levels)
        k = shape.wcc_kept(rate, levels)
        payload, bitmap = _bytes(shape.cin * k, a), _bytes(hp * wp, 1)
        if hw.placement is Placement.COMPRESS_ON_WRITE:
            return Tensors(payload, bitmap, payload + bitmap, shape.cin * k, weight, out, 1)
        full = _bytes(full_elems, a)
        fits = full <= hw.ifmap_sram.size_bytes
        passes = 1 if hw.datapath.topk.mode is TopkMode.TILED or fits else 2
        return Tensors(full * passes, 0, payload + bitmap, shape.cin * k, weight, out, passes)
    if scheme is Scheme.ZVC:
        nz = round(nonzero_fraction * full_elems)
        payload, bitmap = _bytes(nz, a), _bytes(full_elems, 1)
        return Tensors(payload, bitmap, payload + bitmap, full_elems, weight, out, 1)
    full = _bytes(full_elems, a)
    return Tensors(full, 0, full, full_elems, weight, out, 1)


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
    act_fetches: int
    weight_fetches: int
    tiling: str


def layer_traffic(t: Tensors, gemm: Gemm, hw: HwSpec, wcc: bool, weight_bits: int) -> Traffic:
    """DRAM and per-buffer SRAM bytes of one layer from its tensor sizes and GEMM (rules in the module doc)."""
    n_act, n_w, tiling = choose_tiling(t.act_sram_bytes, t.act_dram_bytes + t.bitmap_dram_bytes,
                                       t.weight_bytes, hw.ifmap_sram.size_bytes, hw.weight_sram.size_bytes)
    if t.act_passes > 1:
        tiling += f"; {t.act_passes} passes over the input (top-k energy, then select)"
    act, bitmap, weight = n_act * t.act_dram_bytes, n_act * t.bitmap_dram_bytes, n_w * t.weight_bytes
    mac = hw.datapath.mac
    if_elems, w_elems, k_folds = array_reads(gemm, mac)
    acc = mac.acc_bits
    mn = gemm.m * gemm.n * gemm.groups
    if_read = math.ceil(if_elems * t.act_sram_bytes / t.stored_act_elems)
    w_read = _bytes(w_elems, weight_bits)
    psum_w = _bytes(mn * (k_folds if wcc else k_folds - 1), acc)
    psum_r = _bytes(mn * (k_folds if wcc else k_folds - 1), acc)  # WCC: + one read by the inverse Haar
    of_w, of_r = psum_w + t.output_bytes, psum_r + t.output_bytes
    if_w = n_act * t.act_sram_bytes
    return Traffic(act, bitmap, weight, t.output_bytes, act + bitmap + weight, t.output_bytes,
                   if_read, if_w, w_read, weight, of_r, of_w,
                   if_read + w_read + of_r, if_w + weight + of_w, n_act, n_w, tiling)

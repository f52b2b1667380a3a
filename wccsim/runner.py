"""Run a trace through the bit-accurate datapath and the cost model: one table row per (layer, scheme).

`run(hw, trace, ...)` is the library entry point behind ``wccsim run``; `sweep` and `report` consume the
same rows. Schemes, all in one table and computed from the same calibrated trace:

- ``wcc``: the WCC datapath at the requested rate, act_bits, weight_bits (`simulate_layer`).
- ``int8``: the plain int8 baseline (no Haar; quantize, MAC, requantize): 8-bit activations, weights and
  output register whatever the configuration, so it is the same reference in every row of a sweep.
- ``uniform_nbit``: plain uniform quantization at the same effective bit rate (rate * act_bits bits per
  activation), as in the paper's Figure 1.
- ``zvc``: zero-value compression of the act_bits tensor (lossless on top of plain act_bits quantization;
  DRAM traffic from the measured fraction of non-zero activations).

Scales (``scales``): ``calibrate`` (default) calibrates every quantizer on the trace; ``trace`` takes a
quantized model's own input, weight and output quantizers from a QDQ trace (`wccsim.trace.Qdq`, 8/8 bits
only) for WCC and int8, whose integer bias is the framework's too (`wccsim.simulate.params`); coefficient
scales and uniform_nbit stay calibrated. Then the int8 row's ``framework_mismatches`` counts its output
integers that differ from the framework's own (``<layer>.yq``); it is empty in every other row and run.

Examples
--------
>>> import wccsim                                                         # doctest: +SKIP
>>> df = wccsim.run("hw_configs/edge_npu.yaml", "traces/ppocrv4_det.npz", rate=0.25)  # doctest: +SKIP
>>> df[df.scheme == "wcc"][["layer", "k", "sqnr_total_db", "dram_read_bytes"]]          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from wccsim.cost import cost_fields, layer_cost
from wccsim.errors import InputError
from wccsim.options import (
    RunOptions, configure_datapath, make_options, progress_bar, resolve_hw, resolve_trace, select_layers,
)
from wccsim.results import COUNTERS, hw_coef_design, rows_to_frame
from wccsim.simulate import fixed_scales, simulate_layer, simulate_plain

__all__ = ["SCALES", "check_scales", "layer_rows", "run"]

SCALES = ("calibrate", "trace")

# --------------------------------------------------------------------------------------------- stages

def layer_rows(trace, index: int, info, hw, opts: RunOptions, scales: str = "calibrate") -> list[dict]:
    """Simulate one layer (datapath + cost) for every scheme; returns one row dict per scheme.

    Parameters
    ----------
    trace : Trace
        Source of the layer's tensors (loaded here, one layer at a time).
    index : int
        Position of the layer in the trace (the ``layer_index`` column; keeps trace order when sorting).
    info : LayerInfo
    hw : HwSpec
        Already configured with the run's bit widths (`configure_datapath`).
    opts : RunOptions
    scales : "calibrate" or "trace"
        ``trace``: the layer's own quantizers (`check_scales` first).
    """
    data = trace.layer(info.name)
    fixed = fixed_scales(data.qdq, f"{trace.path}: {info.name}") if scales == "trace" else None
    # keep=False: errors and counters only, computed block by block (bounded memory, issue #6)
    wcc = simulate_layer(data.x, data.w, data.b, hw.datapath, opts.rate, stride=data.stride, keep=False,
                         fixed=fixed, framework_q=None if fixed is None else data.qdq.yq)
    hw8 = configure_datapath(hw, dataclasses.replace(opts, act_bits=8, weight_bits=8))
    int8 = wcc.baselines["int8"] if opts.act_bits == 8 else \
        simulate_plain(data.x, data.w, data.b, hw8.datapath, 8, stride=data.stride, keep=False)
    plain = int8 if (opts.act_bits, opts.weight_bits) == (8, 8) else \
        simulate_plain(data.x, data.w, data.b, hw.datapath, opts.act_bits, stride=data.stride, keep=False)
    uniform = wcc.baselines["uniform_nbit"]
    base = _base_row(hw, index, info, opts)
    # (hw, scheme, result, positions kept, cost-model rate, cost-model act_bits, weight_bits, nonzero
    # fraction); the cost model derives uniform_nbit's bits with the datapath's own `uniform_bits` rule.
    schemes = ((hw, "wcc", wcc, opts.rate, opts.rate, opts.act_bits, opts.weight_bits, None),
               (hw8, "int8", int8, 1.0, 1.0, 8, 8, None),
               (hw, "uniform_nbit", uniform, 1.0, opts.rate, opts.act_bits,
                uniform.weight_bits, None),
               (hw, "zvc", plain, 1.0, 1.0, opts.act_bits, opts.weight_bits, plain.input_nonzero_fraction))
    return [_scheme_row(base, info, *spec) for spec in schemes]


# ------------------------------------------------------------------------------------------ top level

def run(hw, trace, *, rate: float = 0.5, act_bits: int | None = None, weight_bits: int | None = None,
        layers: str | None = None, calib=None, progress: bool | None = None,
        scales: str = "calibrate") -> pd.DataFrame:
    """Simulate every (selected) layer of a trace through the datapath and the cost model.

    Parameters
    ----------
    hw : HwSpec or path to a hardware YAML
    trace : Trace or path to a ``.npz`` trace
    rate : float in (0, 1]
        Fraction of Haar positions kept (k = max(1, floor(rate * P))).
    act_bits, weight_bits : int in 2..16, optional
        Default: the hardware spec's quantizer widths.
    layers : str, optional
        Glob over layer names (``fnmatch``, case-sensitive); default all layers.
    calib : {"max", "percentile", "mse"} or CalibMethod, optional
        Overrides the YAML's calibration method.
    progress : bool, optional
        Progress bar over layers on stderr; default only when stderr is a TTY.
    scales : {"calibrate", "trace"}
        Calibrate every quantizer, or take a QDQ trace's own (module docstring).

    Returns
    -------
    pandas.DataFrame
        One row per (layer, scheme) with `COLUMNS`; see docs/usage.md for units.
    """
    hw = resolve_hw(hw)                                                      # 1. hardware spec
    opts = make_options(hw, rate, act_bits, weight_bits, layers, calib)     # 2. validated options
    trace = resolve_trace(trace)                                             # 3. trace (lazy)
    chosen = select_layers(trace, opts.layers)                               # 4. layers to simulate
    check_scales(scales, trace, chosen, opts)                                #    and their scales
    hw = configure_datapath(hw, opts)                                        # 5. bit widths into the spec
    index = {info.name: i for i, info in enumerate(trace.layers)}
    rows = []
    for info in progress_bar(chosen, "layers", progress):                    # 6. datapath + cost per layer
        rows.extend(layer_rows(trace, index[info.name], info, hw, opts, scales))
    return rows_to_frame(rows)                                               # 7. one sorted table


# -------------------------------------------------------------------------------------------- helpers

def check_scales(scales: str, trace, chosen: list, opts: RunOptions) -> None:
    """``scales`` is one of `SCALES`; ``trace`` needs 8/8 bits and QDQ members on every chosen layer
    (`InputError`, one line, otherwise)."""
    if scales not in SCALES:
        raise InputError("options", "scales", f"one of {list(SCALES)}", repr(scales))
    if scales != "trace":
        return
    if (opts.act_bits, opts.weight_bits) != (8, 8):
        raise InputError("options", "act_bits/weight_bits", "8/8 with --scales trace (the trace's quantizers are "
                         "8-bit)", f"{opts.act_bits}/{opts.weight_bits}")
    missing = [info.name for info in chosen if not info.has_qdq]
    if missing:
        raise InputError(str(trace.path), f"{missing[0]}.yq", "QDQ scales and integers (a trace captured from an "
                         "ONNX QDQ model) for --scales trace", f"none on {len(missing)} of {len(chosen)} layers")


def _base_row(hw, index: int, info, opts: RunOptions) -> dict:
    return {
        "hw": hw.name, "layer_index": int(index), "layer": info.name, "cfg_coef": hw_coef_design(hw),
        "cfg_rate": opts.rate,
        "cfg_act_bits": opts.act_bits, "cfg_weight_bits": opts.weight_bits, "cin": int(info.cin),
        "cout": int(info.cout), "h": int(info.h), "w": int(info.w), "stride": int(info.stride),
    }


def _scheme_row(base: dict, info, hw, scheme: str, result, kept_rate: float, cost_rate: float,
                cost_act_bits: int, weight_bits: int, nz: float | None) -> dict:
    """One table row: identity, effective bits, cost-model counts, errors and overflow counters."""
    row = dict(base)
    cost = layer_cost(info.shape, hw, scheme, cost_rate, cost_act_bits, int(weight_bits), nonzero_fraction=nz)
    act_bits = int(cost.act_bits)
    row.update(scheme=scheme, rate=float(kept_rate), act_bits=act_bits, weight_bits=int(weight_bits))
    wcc = scheme == "wcc"
    row["k"] = int(result.k) if wcc else int(info.h) * int(info.w)
    row["positions"] = int(result.positions) if wcc else int(info.h) * int(info.w)
    row["eff_bits_per_act"] = _eff_bits(scheme, kept_rate, act_bits, nz)
    row.update(cost_fields(cost))
    row.update(_error_fields(result.errors, math.prod(result.output_shape)))
    row.update({c: int(result.counters.get(c, 0)) for c in COUNTERS})
    row["framework_mismatches"] = result.counters.get("framework_mismatches") if scheme == "int8" else None
    return row


def _eff_bits(scheme: str, rate: float, act_bits: int, nz: float | None) -> float:
    """Stored bits per input activation: rate * act_bits for WCC (bitmap excluded, as in the paper's
    Figure 1); nz * act_bits + 1 for ZVC (1-bit zero mask); act_bits otherwise."""
    if scheme == "wcc":
        return float(rate * act_bits)
    if scheme == "zvc":
        return float(nz * act_bits + 1.0)
    return float(act_bits)


def _error_fields(errors: dict, out_elems: int) -> dict:
    """mse_*, sqnr_*_db, max_abs_err and ref_power (mean square of the float reference output).

    Baselines have no compression: their compression error is zero and their quantization error is the total.
    """
    total = errors["total"]
    comp, quant = errors.get("compress", _NO_ERROR), errors.get("quant", total)
    row = {
        "mse_compress": float(comp.mse), "mse_quant": float(quant.mse), "mse_total": float(total.mse),
        "sqnr_compress_db": float(comp.sqnr_db), "sqnr_quant_db": float(quant.sqnr_db),
        "sqnr_total_db": float(total.sqnr_db), "max_abs_err": float(total.max_abs),
    }
    row["ref_power"] = float(total.mse * 10.0 ** (total.sqnr_db / 10.0)) if total.mse > 0 else math.nan
    row["out_elems"] = int(out_elems)
    return row


@dataclass(frozen=True)
class _NoError:
    mse: float = 0.0
    sqnr_db: float = math.inf
    max_abs: float = 0.0


_NO_ERROR = _NoError()



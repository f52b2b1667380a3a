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

Examples
--------
>>> import wccsim                                                         # doctest: +SKIP
>>> df = wccsim.run("hw_configs/edge_npu.yaml", "traces/ppocrv4_det.npz", rate=0.25)  # doctest: +SKIP
>>> df[df.scheme == "wcc"][["layer", "k", "sqnr_total_db", "dram_read_bytes"]]          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from wccsim.errors import InputError
from wccsim.hw import CalibMethod, HwSpec, load_hw
from wccsim.trace import open_trace

__all__ = [
    "SCHEMES", "COLUMNS", "TOTAL_COLUMNS", "RunOptions", "make_options", "resolve_hw", "resolve_trace",
    "select_layers", "configure_datapath", "layer_rows", "rows_to_frame", "totals", "run", "progress_bar",
    "COUNTERS", "CONFIG_KEYS",
]

SCHEMES = ("wcc", "int8", "uniform_nbit", "zvc")

# Datapath saturation / overflow counters (events per layer), reported per row and summed in totals.
COUNTERS = ("acc_overflows", "haar_saturations", "coef_saturations", "inverse_saturations",
             "bias_saturations", "output_saturations")
# Cost-model fields copied into each row (`wccsim.cost.LayerCost`; units in the names, ops, cycles).
_COST_INTS = ("macs", "dram_read_bytes", "dram_write_bytes", "sram_read_bytes", "sram_write_bytes",
              "act_read_bytes", "weight_read_bytes", "bitmap_bytes", "output_write_bytes", "cycles",
              "compute_cycles", "memory_cycles", "haar_cycles", "topk_cycles")
_COST_FLOATS = ("bops", "bops_hw", "energy_pj", "energy_mac_pj", "energy_haar_pj", "energy_topk_pj",
                "energy_requant_pj", "energy_sram_pj", "energy_dram_pj")
# Output columns, in order (units in docs/usage.md). cfg_* identify the requested configuration; rate,
# act_bits, weight_bits are what the row's scheme actually uses (int8: 1.0, 8, 8).
COLUMNS = (
    "hw", "layer_index", "layer", "scheme", "cfg_rate", "cfg_act_bits", "cfg_weight_bits",
    "cin", "cout", "h", "w", "stride", "rate", "k", "positions", "act_bits", "weight_bits",
    "eff_bits_per_act", "macs", "bops", "bops_hw", "dram_read_bytes", "dram_write_bytes", "sram_read_bytes",
    "sram_write_bytes", "act_read_bytes", "weight_read_bytes", "bitmap_bytes", "output_write_bytes",
    "cycles", "compute_cycles", "memory_cycles", "haar_cycles", "topk_cycles", "bound", "tiling",
    "energy_pj", "energy_mac_pj", "energy_haar_pj", "energy_topk_pj", "energy_requant_pj", "energy_sram_pj",
    "energy_dram_pj", "mse_compress", "mse_quant", "mse_total", "sqnr_compress_db",
    "sqnr_quant_db", "sqnr_total_db", "max_abs_err", "ref_power", "out_elems", *COUNTERS,
)
CONFIG_KEYS = ("hw", "cfg_rate", "cfg_act_bits", "cfg_weight_bits")
_SUM_COLUMNS = (*_COST_INTS, *_COST_FLOATS, *COUNTERS)
TOTAL_COLUMNS = (
    *CONFIG_KEYS, "scheme", "rate", "act_bits", "weight_bits", "layers", "eff_bits_per_act", *_COST_INTS,
    "memory_bound_layers", *_COST_FLOATS, "mse_total", "sqnr_total_db", "max_abs_err", *COUNTERS,
)


@dataclass(frozen=True)
class RunOptions:
    """Validated options of one run. ``calib`` None keeps the hardware YAML's calibration method."""
    rate: float = 0.5
    act_bits: int = 8
    weight_bits: int = 8
    layers: str | None = None
    calib: CalibMethod | None = None


# --------------------------------------------------------------------------------------------- stages

def make_options(hw, rate=0.5, act_bits=None, weight_bits=None, layers=None, calib=None) -> RunOptions:
    """Validate user options; act_bits / weight_bits default to the hardware spec's quantizer widths.

    Raises `InputError` (one line) for a rate outside (0, 1], bits outside 2..16 or an unknown calibration.
    """
    quant = hw.datapath.quant
    act_bits = quant.act_bits if act_bits is None else act_bits
    weight_bits = quant.weight_bits if weight_bits is None else weight_bits
    _check_rate(rate)
    _check_bits("act_bits", act_bits)
    _check_bits("weight_bits", weight_bits)
    if calib is not None and not isinstance(calib, CalibMethod):
        allowed = [m.value for m in CalibMethod]
        if calib not in allowed:
            raise InputError("options", "calib", f"one of {allowed}", calib)
        calib = CalibMethod(calib)
    return RunOptions(float(rate), int(act_bits), int(weight_bits), layers, calib)


def _check_rate(rate) -> None:
    ok = isinstance(rate, (int, float, np.floating)) and not isinstance(rate, bool)
    if not ok or not math.isfinite(rate) or not 0.0 < rate <= 1.0:
        raise InputError("options", "rate", "a number in (0, 1]", rate)


def _check_bits(name: str, bits) -> None:
    ok = isinstance(bits, (int, np.integer)) and not isinstance(bits, bool)
    if not ok or not 2 <= bits <= 16:
        raise InputError("options", name, "an integer in 2..16", bits)


def resolve_hw(hw):
    """A `HwSpec` as given, or loaded from a YAML path (missing file -> `InputError`)."""
    if isinstance(hw, HwSpec):
        return hw
    return load_hw(Path(hw))  # refuses a missing file, a directory, ... with a one-line InputError


def resolve_trace(trace):
    """A `Trace` as given, or opened from an ``.npz`` path (missing file -> `InputError`)."""
    if not isinstance(trace, (str, Path)):
        return trace
    return open_trace(Path(trace))  # refuses a missing file, a directory, ... with a one-line InputError


def select_layers(trace, pattern: str | None) -> list:
    """Trace layers (`LayerInfo`, trace order) whose name matches the glob; a glob matching none is an error."""
    infos = list(trace.layers)
    if pattern is None:
        return infos
    chosen = [info for info in infos if fnmatch.fnmatchcase(info.name, pattern)]
    if not chosen:
        raise InputError("options", "layers", f"a glob matching a layer of the trace ({len(infos)} layers)",
                         pattern)
    return chosen


def configure_datapath(hw, opts: RunOptions):
    """The hardware spec with the run's bit widths (and calibration, if given) in its quantizer."""
    quant = dataclasses.replace(hw.datapath.quant, act_bits=opts.act_bits, weight_bits=opts.weight_bits)
    if opts.calib is not None:
        quant = dataclasses.replace(quant, calib=opts.calib)
    return dataclasses.replace(hw, datapath=dataclasses.replace(hw.datapath, quant=quant))


def layer_rows(trace, index: int, info, hw, opts: RunOptions) -> list[dict]:
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
    """
    from wccsim.simulate import simulate_layer, simulate_plain

    data = trace.layer(info.name)
    # keep=False: errors and counters only, computed block by block (bounded memory, issue #6)
    wcc = simulate_layer(data.x, data.w, data.b, hw.datapath, opts.rate, stride=data.stride, keep=False)
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


def rows_to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with `COLUMNS` in order, sorted deterministically (config, trace order, scheme)."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    if df.empty:
        return df
    order = {s: i for i, s in enumerate(SCHEMES)}
    df["_scheme_order"] = df["scheme"].map(order)
    df = df.sort_values([*CONFIG_KEYS, "layer_index", "_scheme_order"], kind="mergesort")
    return df.drop(columns="_scheme_order").reset_index(drop=True)


def totals(df: pd.DataFrame) -> pd.DataFrame:
    """Network totals per (config, scheme): summed counts, element-weighted errors, network SQNR.

    Network SQNR (dB) = 10 log10(sum_l ref_power_l * out_elems_l / sum_l mse_total_l * out_elems_l);
    ``eff_bits_per_act`` is weighted by each layer's input elements (cin * h * w).
    """
    out = []
    for key, g in df.groupby([*CONFIG_KEYS, "scheme"], sort=False):
        out.append(_total_row(dict(zip([*CONFIG_KEYS, "scheme"], key)), g))
    return pd.DataFrame(out, columns=list(TOTAL_COLUMNS))


# ------------------------------------------------------------------------------------------ top level

def run(hw, trace, *, rate: float = 0.5, act_bits: int | None = None, weight_bits: int | None = None,
        layers: str | None = None, calib=None, progress: bool | None = None) -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        One row per (layer, scheme) with `COLUMNS`; see docs/usage.md for units.
    """
    hw = resolve_hw(hw)                                                      # 1. hardware spec
    opts = make_options(hw, rate, act_bits, weight_bits, layers, calib)     # 2. validated options
    trace = resolve_trace(trace)                                             # 3. trace (lazy)
    chosen = select_layers(trace, opts.layers)                               # 4. layers to simulate
    hw = configure_datapath(hw, opts)                                        # 5. bit widths into the spec
    index = {info.name: i for i, info in enumerate(trace.layers)}
    rows = []
    for info in progress_bar(chosen, "layers", progress):                    # 6. datapath + cost per layer
        rows.extend(layer_rows(trace, index[info.name], info, hw, opts))
    return rows_to_frame(rows)                                               # 7. one sorted table


# -------------------------------------------------------------------------------------------- helpers

def progress_bar(items, desc: str, enabled: bool | None = None, total: int | None = None):
    """tqdm over `items` on stderr; by default shown only when stderr is a TTY."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(items, desc=desc, total=total, disable=not enabled, file=sys.stderr, leave=False)


def _base_row(hw, index: int, info, opts: RunOptions) -> dict:
    return {
        "hw": hw.name, "layer_index": int(index), "layer": info.name, "cfg_rate": opts.rate,
        "cfg_act_bits": opts.act_bits, "cfg_weight_bits": opts.weight_bits, "cin": int(info.cin),
        "cout": int(info.cout), "h": int(info.h), "w": int(info.w), "stride": int(info.stride),
    }


def _scheme_row(base: dict, info, hw, scheme: str, result, kept_rate: float, cost_rate: float,
                cost_act_bits: int, weight_bits: int, nz: float | None) -> dict:
    """One table row: identity, effective bits, cost-model counts, errors and overflow counters."""
    from wccsim.cost import layer_cost

    row = dict(base)
    cost = layer_cost(info.shape, hw, scheme, cost_rate, cost_act_bits, int(weight_bits), nonzero_fraction=nz)
    act_bits = int(cost.act_bits)
    row.update(scheme=scheme, rate=float(kept_rate), act_bits=act_bits, weight_bits=int(weight_bits))
    wcc = scheme == "wcc"
    row["k"] = int(result.k) if wcc else int(info.h) * int(info.w)
    row["positions"] = int(result.positions) if wcc else int(info.h) * int(info.w)
    row["eff_bits_per_act"] = _eff_bits(scheme, kept_rate, act_bits, nz)
    row.update(_cost_fields(cost))
    row.update(_error_fields(result.errors, math.prod(result.output_shape)))
    row.update({c: int(result.counters.get(c, 0)) for c in COUNTERS})
    return row


def _eff_bits(scheme: str, rate: float, act_bits: int, nz: float | None) -> float:
    """Stored bits per input activation: rate * act_bits for WCC (bitmap excluded, as in the paper's
    Figure 1); nz * act_bits + 1 for ZVC (1-bit zero mask); act_bits otherwise."""
    if scheme == "wcc":
        return float(rate * act_bits)
    if scheme == "zvc":
        return float(nz * act_bits + 1.0)
    return float(act_bits)


def _cost_fields(cost) -> dict:
    row = {f: int(getattr(cost, f)) for f in _COST_INTS}
    row.update({f: float(getattr(cost, f)) for f in _COST_FLOATS})
    row["bound"] = cost.bound.value if isinstance(cost.bound, enum.Enum) else str(cost.bound)
    row["tiling"] = str(cost.tiling)
    return row


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


def _total_row(key: dict, g: pd.DataFrame) -> dict:
    first = g.iloc[0]
    row = dict(key, rate=float(first.rate), act_bits=int(first.act_bits), weight_bits=int(first.weight_bits),
               layers=len(g))
    in_elems = (g["cin"] * g["h"] * g["w"]).astype(float)
    row["eff_bits_per_act"] = float((g["eff_bits_per_act"] * in_elems).sum() / in_elems.sum())
    for col in _SUM_COLUMNS:
        row[col] = g[col].sum().item()
    row["memory_bound_layers"] = int((g["bound"] == "memory").sum())
    elems = g["out_elems"].astype(float)
    err = float((g["mse_total"] * elems).sum())
    sig = float((g["ref_power"].fillna(0.0) * elems).sum())
    row["mse_total"] = err / float(elems.sum())
    row["sqnr_total_db"] = 10.0 * math.log10(sig / err) if err > 0 else math.inf
    row["max_abs_err"] = float(g["max_abs_err"].max())
    return row

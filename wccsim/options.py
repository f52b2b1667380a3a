"""Options shared by every orchestration (`wccsim.runner`, `wccsim.sweeper`, `wccsim.network`): validated
run options, hardware and trace resolution, layer selection, the datapath configured with the run's
widths, and the progress bar."""

from __future__ import annotations

import dataclasses
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from wccsim.errors import InputError
from wccsim.hw import CalibMethod, CoefGranularity, CoefScale, HwSpec, hw_from_dict, load_hw, spec_to_dict
from wccsim.rules import check_bits, check_rate
from wccsim.trace import open_trace

__all__ = ["RunOptions", "CoefDesign", "make_options", "parse_coef", "apply_coef", "resolve_hw", "resolve_trace",
           "select_layers", "configure_datapath", "progress_bar", "check_jobs"]


@dataclass(frozen=True)
class RunOptions:
    """Validated options of one run. ``calib`` None keeps the hardware YAML's calibration method."""
    rate: float = 0.5
    act_bits: int = 8
    weight_bits: int = 8
    layers: str | None = None
    calib: CalibMethod | None = None


def make_options(hw, rate=0.5, act_bits=None, weight_bits=None, layers=None, calib=None) -> RunOptions:
    """Validate user options; act_bits / weight_bits default to the hardware spec's quantizer widths.

    Raises `InputError` (one line) for a rate outside (0, 1], bits outside 2..16 or an unknown calibration.
    """
    quant = hw.datapath.quant
    act_bits = quant.act_bits if act_bits is None else act_bits
    weight_bits = quant.weight_bits if weight_bits is None else weight_bits
    check_rate(rate)
    check_bits(act_bits, "options", "act_bits")
    check_bits(weight_bits, "options", "weight_bits")
    if calib is not None and not isinstance(calib, CalibMethod):
        allowed = [m.value for m in CalibMethod]
        if calib not in allowed:
            raise InputError("options", "calib", f"one of {allowed}", calib)
        calib = CalibMethod(calib)
    return RunOptions(float(rate), int(act_bits), int(weight_bits), layers, calib)


@dataclass(frozen=True)
class CoefDesign:
    """A coefficient quantizer design of ``wccsim sweep --coef``: ``granularity[:scale]`` (scale None = the
    hardware YAML's ``coef.scale``)."""
    granularity: CoefGranularity
    scale: CoefScale | None = None


def parse_coef(text: str, where: str = "options", field: str = "coef") -> CoefDesign:
    """``'per_band:pow2'`` -> `CoefDesign`; an unknown granularity or scale is a one-line `InputError`."""
    gran, _, scale = str(text).strip().partition(":")
    try:
        g = CoefGranularity(gran)
    except ValueError:
        raise InputError(where, field, "granularity[:scale] with granularity one of "
                         f"{[m.value for m in CoefGranularity]}", text) from None
    if ":" not in str(text):
        return CoefDesign(g)
    try:
        return CoefDesign(g, CoefScale(scale))
    except ValueError:
        raise InputError(where, field, f"granularity[:scale] with scale one of {[m.value for m in CoefScale]}",
                         text) from None


def apply_coef(hw: HwSpec, design: CoefDesign | None) -> HwSpec:
    """`hw` with the design's coefficient granularity (and scale, when given), validated again as a whole
    spec (`wccsim.hw.hw_from_dict`): a design the hardware cannot run (``per_tensor`` with ``coef.ll_bits``
    != ``coef.bits``; ``per_level`` / ``per_band`` with ``mac.acc_bits`` > 32) is a one-line `InputError`
    naming the design and the hardware. None = `hw` unchanged (its YAML's own design)."""
    if design is None:
        return hw
    spec = spec_to_dict(hw)
    coef = dict(spec["coef"], granularity=design.granularity.value)
    if design.scale is not None:
        coef["scale"] = design.scale.value
    spec["coef"] = coef
    return hw_from_dict(spec, where=f"--coef {coef['granularity']}:{coef['scale']} on hw {hw.name}")


def check_jobs(jobs) -> int:
    """``jobs`` (work items run at once) when it is a positive integer; anything else is an `InputError`."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError("options", "jobs", "a positive integer", jobs)
    return jobs


def resolve_hw(hw, coef: str | None = None):
    """A `HwSpec` as given, or loaded from a YAML path (missing file -> `InputError`); with ``coef`` (a
    design ``granularity[:scale]``, `parse_coef`) its coefficient quantizer replaced (`apply_coef`)."""
    if not isinstance(hw, HwSpec):
        hw = load_hw(Path(hw))  # refuses a missing file, a directory, ... with a one-line InputError
    return hw if coef is None else apply_coef(hw, parse_coef(coef))


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


def progress_bar(items, desc: str, enabled: bool | None = None, total: int | None = None):
    """tqdm over `items` on stderr; by default shown only when stderr is a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(items, desc=desc, total=total, disable=not enabled, file=sys.stderr, leave=False)

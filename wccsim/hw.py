"""Hardware specification: nested frozen dataclasses, loaded and validated from YAML.

Units are in the field names: ``_bits``, ``_bytes``, ``_mhz``, ``_pj``, ``_per_cycle``.
Knobs are Enums; code compares members, never strings. ``load_hw(path)`` (below) is the only way a
YAML file becomes a `HwSpec`; every error it raises is a one-line `InputError` naming file and field.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from wccsim.errors import InputError

__all__ = [
    "Normalize", "Rounding", "Metric", "TopkMode", "Overflow", "Dataflow", "RequantMode",
    "Placement", "WeightGranularity", "ActSign", "CalibMethod", "CoefGranularity", "CoefScale",
    "QuantSpec", "CoefSpec", "HaarSpec", "TopkSpec", "MacSpec", "RequantSpec", "DatapathSpec",
    "SramSpec", "DramSpec", "EnergySpec", "HwSpec",
    "load_hw", "hw_from_dict", "spec_to_dict", "spec_hash", "schema_rows", "schema_markdown",
]


class Normalize(enum.Enum):
    """Haar normalization: ``per_level`` shifts right by 1 each level; ``deferred`` shifts once at the end."""
    PER_LEVEL = "per_level"
    DEFERRED = "deferred"


class Rounding(enum.Enum):
    """Rounding of a right shift: half_up = (v + 2^(s-1)) >> s; floor = v >> s; half_even = ties to even."""
    HALF_UP = "half_up"
    FLOOR = "floor"
    HALF_EVEN = "half_even"


class Metric(enum.Enum):
    """Top-k energy of a position across channels: sum of squares, sum of |.|, or max |.|."""
    L2 = "l2"
    L1 = "l1"
    LINF = "linf"


class TopkMode(enum.Enum):
    EXACT = "exact"
    TILED = "tiled"
    THRESHOLD = "threshold"


class Overflow(enum.Enum):
    """Accumulator overflow: ``saturate`` clips the exact sum once at the end (a wide adder tree or guard
    bits, clipped when the register is written out); ``saturate_each_add`` clips after every addition in
    the array's reduction order (a saturating accumulator register, as ARM ``QADD``/``SQADD``); ``wrap``
    keeps the low bits (a plain two's-complement adder; identical at the end or per addition)."""
    SATURATE = "saturate"
    SATURATE_EACH_ADD = "saturate_each_add"
    WRAP = "wrap"


class Dataflow(enum.Enum):
    WEIGHT_STATIONARY = "weight_stationary"
    OUTPUT_STATIONARY = "output_stationary"
    INPUT_STATIONARY = "input_stationary"


class RequantMode(enum.Enum):
    """Output requantization: gemmlowp fixed point, float32 as onnxruntime's QLinearConv (MLAS
    ``MlasRequantizeOutput``), or a pure shift."""
    FIXED_POINT = "fixed_point"
    FLOAT32 = "float32"
    POW2 = "pow2"


class Placement(enum.Enum):
    """Where the WCC compressor sits relative to DRAM."""
    COMPRESS_ON_WRITE = "compress_on_write"
    COMPRESS_ON_READ = "compress_on_read"


class WeightGranularity(enum.Enum):
    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"


class ActSign(enum.Enum):
    """Input activation quantization: signed symmetric, unsigned (zero point 0) or chosen from the data."""
    SIGNED = "signed"
    UNSIGNED = "unsigned"
    AUTO = "auto"


class CalibMethod(enum.Enum):
    MAX = "max"
    PERCENTILE = "percentile"
    MSE = "mse"


class CoefGranularity(enum.Enum):
    """Scales of the wavelet coefficients: one per layer (paper); LL_L and each level's details; LL_L and
    each level's LH, HL, HH (``rules.band_groups``)."""
    PER_TENSOR = "per_tensor"
    PER_LEVEL = "per_level"
    PER_BAND = "per_band"


class CoefScale(enum.Enum):
    """How the chip holds and applies coefficient scales: float32 multiplier, integer multiplier + shift,
    or shifts only (scales are powers of two apart)."""
    FLOAT = "float"
    FIXED_POINT = "fixed_point"
    POW2 = "pow2"


# ---------------------------------------------------------------------------------------------
# Field metadata: unit, allowed range and a one-line description. `load_hw` validates against it
# and docs/hw_schema.md is generated from it (`schema_markdown`), so code and docs cannot drift.
# ---------------------------------------------------------------------------------------------
_MAX_INT = 2**48  # refuse absurd integers (a 256 TiB buffer is a typo, not a design)
_MAX_FLOAT = 1e12
_MAX_REGISTER_BITS = 60  # widest register the int64 datapath simulates (wccsim.datapath.haar._MAX_WIDTH_BITS)


def _knob(default, doc: str, unit: str = "", lo=None, hi=None, required: bool = False, default_doc: str = ""):
    """A dataclass field carrying its unit, range and description for validation and docs (``default_doc``
    names the field a None default follows)."""
    meta = {"doc": doc, "unit": unit, "lo": lo, "hi": hi, "required": required, "default_doc": default_doc}
    if required:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class QuantSpec:
    """Activation / weight quantization. Bits in 2..16."""
    act_bits: int = _knob(8, "activation width (also the width of stored WCC coefficients)", "bit", 2, 16)
    weight_bits: int = _knob(8, "weight width", "bit", 2, 16)
    act_sign: ActSign = _knob(ActSign.AUTO, "input activation quantization: signed symmetric, unsigned, "
                              "or chosen from the data")
    weight_granularity: WeightGranularity = _knob(WeightGranularity.PER_TENSOR,
                                                  "weight scale per tensor (paper) or per output channel")
    calib: CalibMethod = _knob(CalibMethod.MSE, "calibration method for activation scales")
    percentile: float = _knob(99.99, "percentile for `calib: percentile`", "%", 50.0, 100.0)


@dataclass(frozen=True)
class CoefSpec:
    """Wavelet-coefficient quantizer (docs/datapath_numerics.md). ``bits``/``ll_bits`` None = the default
    (``quant.act_bits``, then ``bits``); read them through `DatapathSpec.coef_bits` / ``coef_ll_bits``."""
    granularity: CoefGranularity = _knob(CoefGranularity.PER_TENSOR, "one coefficient scale per layer "
                                         "(paper), per Haar level (LL_L apart), or per band")
    scale: CoefScale = _knob(CoefScale.FIXED_POINT, "coefficient requant and band rescale arithmetic: "
                             "float32 multiply, integer multiplier + shift, or shift only")
    bits: int | None = _knob(None, "width of the stored detail coefficients", "bit", 2, 16,
                             default_doc="quant.act_bits")
    ll_bits: int | None = _knob(None, "width of the stored LL_L coefficients (= bits with per_tensor)",
                                "bit", 2, 16, default_doc="coef.bits")


@dataclass(frozen=True)
class HaarSpec:
    """Shift-add Haar unit. ``width_bits`` is the declared coefficient register width (saturates beyond)."""
    levels: int = _knob(3, "Haar decomposition levels (the paper uses 3)", "", 1, 8)
    normalize: Normalize = _knob(Normalize.PER_LEVEL, "per-level >>1 (orthonormal) or one deferred shift")
    rounding: Rounding = _knob(Rounding.HALF_UP, "rounding of the normalization shifts")
    width_bits: int = _knob(16, "coefficient register width inside the Haar unit (at most 60: int64 "
                            "holds it plus the butterfly's guard bits)", "bit", 2, _MAX_REGISTER_BITS)
    elems_per_cycle: int = _knob(16, "Haar unit throughput (input elements per cycle)", "element/cycle",
                                 1, 65536)


@dataclass(frozen=True)
class TopkSpec:
    """Joint top-k selector. ``tile_positions`` is T for the ``tiled`` mode."""
    metric: Metric = _knob(Metric.L2, "energy of a position across channels")
    mode: TopkMode = _knob(TopkMode.EXACT, "exact top-k, per-tile top-k, or two-pass threshold")
    tile_positions: int = _knob(64, "positions per tile for `mode: tiled`", "position", 1, 2**24)
    elems_per_cycle: int = _knob(16, "top-k unit throughput (coefficients per cycle)", "element/cycle",
                                 1, 65536)


@dataclass(frozen=True)
class MacSpec:
    """MAC array of rows x cols int multipliers with ``acc_bits`` accumulators."""
    rows: int = _knob(16, "MAC array rows", "PE", 1, 4096)
    cols: int = _knob(16, "MAC array columns", "PE", 1, 4096)
    dataflow: Dataflow = _knob(Dataflow.WEIGHT_STATIONARY, "which operand stays in the PEs")
    acc_bits: int = _knob(32, "accumulator width (>= act_bits + weight_bits; at most 63: the simulator "
                          "holds exact sums in int64)", "bit", 4, 63)
    overflow: Overflow = _knob(Overflow.SATURATE, "accumulator overflow: clip the exact sum once at the end, "
                               "clip at every addition (ascending input channel), or wrap")


@dataclass(frozen=True)
class RequantSpec:
    mode: RequantMode = _knob(RequantMode.FIXED_POINT, "output requantization arithmetic: gemmlowp/TFLite int32 "
                              "multiplier + shift; float32 product rounded half to even, as onnxruntime's CPU "
                              "kernels (MLAS) do; or a shift")


@dataclass(frozen=True)
class DatapathSpec:
    """Everything the bit-accurate datapath needs (no memory or energy figures)."""
    quant: QuantSpec = field(default_factory=QuantSpec)
    haar: HaarSpec = field(default_factory=HaarSpec)
    topk: TopkSpec = field(default_factory=TopkSpec)
    mac: MacSpec = field(default_factory=MacSpec)
    requant: RequantSpec = field(default_factory=RequantSpec)
    coef: CoefSpec = field(default_factory=CoefSpec)

    @property
    def coef_bits(self) -> int:
        """Width of the stored detail coefficients: ``coef.bits``, default ``quant.act_bits``."""
        return self.quant.act_bits if self.coef.bits is None else self.coef.bits

    @property
    def coef_ll_bits(self) -> int:
        """Width of the stored LL_L coefficients: ``coef.ll_bits``, default `coef_bits`."""
        return self.coef_bits if self.coef.ll_bits is None else self.coef.ll_bits


@dataclass(frozen=True)
class SramSpec:
    """One on-chip SRAM buffer. Energies are per word access (Horowitz ISSCC 2014: 8 KB, 64-bit ~10 pJ)."""
    size_bytes: int = _knob(None, "capacity", "byte", 64, _MAX_INT, required=True)
    word_bits: int = _knob(64, "access width", "bit", 8, 4096)
    banks: int = _knob(1, "banks (informational; accesses are counted in words)", "", 1, 1024)
    read_energy_pj: float = _knob(10.0, "energy of one word read", "pJ/access", 0.0, _MAX_FLOAT)
    write_energy_pj: float = _knob(10.0, "energy of one word write", "pJ/access", 0.0, _MAX_FLOAT)


@dataclass(frozen=True)
class DramSpec:
    """Off-chip memory. Default energy: Horowitz ISSCC 2014, 1.3-2.6 nJ per 64-bit access -> 162.5 pJ/B."""
    bandwidth_bytes_per_cycle: float = _knob(8.0, "sustained bandwidth at the accelerator clock",
                                             "byte/cycle", 1e-3, 1e6)
    energy_pj_per_byte: float = _knob(162.5, "energy per byte transferred", "pJ/byte", 0.0, _MAX_FLOAT)


@dataclass(frozen=True)
class EnergySpec:
    """Per-operation energies in pJ (45 nm defaults from Horowitz ISSCC 2014; cite sources in the YAML)."""
    mac_pj: float = _knob(0.3, "one act_bits x weight_bits multiply + acc_bits accumulate at the YAML's "
                          "quant bits (8x8 mult 0.2 pJ + 32-bit add 0.1 pJ); scaled by the bit product "
                          "for other widths", "pJ/op", 0.0, _MAX_FLOAT)
    add_pj: float = _knob(0.05, "one Haar add/sub at its declared width (8-bit 0.03, 32-bit 0.1 pJ)",
                          "pJ/op", 0.0, _MAX_FLOAT)
    compare_pj: float = _knob(0.1, "one top-k energy compare (a 32-bit subtract)", "pJ/op", 0.0, _MAX_FLOAT)
    metric_pj: float = _knob(0.9, "one coefficient folded into a position's energy (l2: 16-bit square "
                             "~0.8 pJ + 32-bit add 0.1 pJ)", "pJ/op", 0.0, _MAX_FLOAT)
    requant_pj: float = _knob(3.2, "one output requantization (32-bit mult 3.1 pJ + add 0.1 pJ)",
                              "pJ/op", 0.0, _MAX_FLOAT)


@dataclass(frozen=True)
class HwSpec:
    """A whole accelerator: datapath knobs, buffers, DRAM, energies, compressor placement."""
    name: str = _knob(None, "configuration name (free text, 1-64 characters)", required=True)
    clock_mhz: float = _knob(None, "accelerator clock", "MHz", 1e-3, 1e5, required=True)
    datapath: DatapathSpec = field(default_factory=DatapathSpec)
    ifmap_sram: SramSpec = field(default_factory=lambda: SramSpec(size_bytes=64 * 1024))
    weight_sram: SramSpec = field(default_factory=lambda: SramSpec(size_bytes=64 * 1024))
    ofmap_sram: SramSpec = field(default_factory=lambda: SramSpec(size_bytes=64 * 1024))
    dram: DramSpec = field(default_factory=DramSpec)
    energy: EnergySpec = field(default_factory=EnergySpec)
    placement: Placement = _knob(Placement.COMPRESS_ON_WRITE,
                                 "where the WCC compressor sits: the producer writes the compressed "
                                 "tensor + bitmap to DRAM, or the consumer compresses what it reads")


# YAML layout -> (attribute path in HwSpec, section dataclass). Scalars live at the top level.
_SECTIONS = {
    "quant": (("datapath", "quant"), QuantSpec),
    "haar": (("datapath", "haar"), HaarSpec),
    "topk": (("datapath", "topk"), TopkSpec),
    "mac": (("datapath", "mac"), MacSpec),
    "requant": (("datapath", "requant"), RequantSpec),
    "coef": (("datapath", "coef"), CoefSpec),
    "sram.ifmap": (("ifmap_sram",), SramSpec),
    "sram.weight": (("weight_sram",), SramSpec),
    "sram.ofmap": (("ofmap_sram",), SramSpec),
    "dram": (("dram",), DramSpec),
    "energy": (("energy",), EnergySpec),
}
_TOP_SCALARS = ("name", "clock_mhz", "placement")
_TOP_KEYS = _TOP_SCALARS + ("quant", "haar", "topk", "mac", "requant", "coef", "sram", "dram", "energy")
_SRAM_KEYS = ("ifmap", "weight", "ofmap")
_MAX_FILE_BYTES = 1 << 20


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"one of {', '.join(valid)}{hint}"


def _check_keys(where: str, prefix: str, data, valid) -> None:
    if not isinstance(data, dict):
        raise InputError(where, prefix or "(top level)", "a mapping of keys to values", type(data).__name__)
    for key in data:
        if key not in valid:
            raise InputError(where, f"{prefix}.{key}" if prefix else str(key),
                             "a known key: " + _suggest(key, valid), "an unknown key")


def _scalar(where: str, path: str, value, typ, meta):
    """Validate one YAML scalar against its field type and range; return the typed value."""
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        allowed = [m.value for m in typ]
        if not isinstance(value, str) or value not in allowed:
            raise InputError(where, path, _suggest(value, allowed), repr(value))
        return typ(value)
    if typ is str:
        if not isinstance(value, str) or not 1 <= len(value) <= 64 or "\n" in value:
            raise InputError(where, path, "a one-line string of 1-64 characters", repr(value)[:40])
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(where, path, f"an integer in [{lo}, {hi}]", repr(value)[:40])
        if not lo <= value <= hi:
            want = "a positive integer" if lo == 1 and value < 1 else f"an integer in [{lo}, {hi}]"
            raise InputError(where, path, want, value if abs(value) < 10**15 else f"{value:.3g}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(where, path, f"a number in [{lo:g}, {hi:g}]", repr(value)[:40])
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InputError(where, path, f"a finite number in [{lo:g}, {hi:g}]", f"{value:g}")
    return value


def _plain_type(typ):
    """``X`` of an optional field's ``X | None``; other types as they are."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    return args[0] if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1 else typ


def _build(where: str, prefix: str, cls, data):
    """Build dataclass `cls` from mapping `data`, validating every key."""
    data = {} if data is None else data
    fs = {f.name: f for f in fields(cls)}
    _check_keys(where, prefix, data, list(fs))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fs.items():
        path = f"{prefix}.{name}" if prefix else name
        if name in data:
            if data[name] is None:
                raise InputError(where, path, "a value", "nothing (empty value)")
            kwargs[name] = _scalar(where, path, data[name], _plain_type(hints[name]), f.metadata)
        elif f.metadata.get("required"):
            raise InputError(where, path, "a value (required key)", "nothing (missing)")
    return cls(**kwargs)


def _cross_checks(where: str, hw: HwSpec) -> None:
    """Relations between fields that single-field ranges cannot express."""
    q, mac = hw.datapath.quant, hw.datapath.mac
    if mac.acc_bits < q.act_bits + q.weight_bits:
        raise InputError(where, "mac.acc_bits", f"at least act_bits + weight_bits = "
                         f"{q.act_bits + q.weight_bits}", mac.acc_bits)
    haar = hw.datapath.haar
    growth = haar.levels * (1 if haar.normalize is Normalize.PER_LEVEL else 2)
    if mac.acc_bits + growth > _MAX_REGISTER_BITS:  # the inverse Haar widens the accumulator by `growth` bits
        raise InputError(where, "mac.acc_bits", f"at most {_MAX_REGISTER_BITS - growth} with haar.levels = "
                         f"{haar.levels} ({haar.normalize.value}: the inverse Haar adds {growth} bits to a "
                         f"{_MAX_REGISTER_BITS}-bit register limit)", mac.acc_bits)
    if haar.width_bits < q.act_bits:
        raise InputError(where, "haar.width_bits", f"at least quant.act_bits = {q.act_bits}",
                         hw.datapath.haar.width_bits)
    _coef_checks(where, hw.datapath)
    for key in _SRAM_KEYS:
        sram = getattr(hw, f"{key}_sram")
        if sram.size_bytes * 8 < sram.word_bits:
            raise InputError(where, f"sram.{key}.size_bytes", f"at least one word ({sram.word_bits} bit)",
                             sram.size_bytes)


def _coef_checks(where: str, dp: DatapathSpec) -> None:
    """One scale cannot serve two widths; the band rescale (stage 5b) is a 32 x 16-bit multiplier."""
    if dp.coef.granularity is CoefGranularity.PER_TENSOR and dp.coef_ll_bits != dp.coef_bits:
        raise InputError(where, "coef.ll_bits", f"coef.bits = {dp.coef_bits} with granularity per_tensor (one "
                         "scale for every band)", dp.coef_ll_bits)
    if dp.coef.granularity is not CoefGranularity.PER_TENSOR and dp.mac.acc_bits > 32:
        raise InputError(where, "mac.acc_bits", "at most 32 with coef.granularity per_level or per_band (the band "
                         "rescale takes a 32-bit accumulator)", dp.mac.acc_bits)
    if dp.haar.width_bits < max(dp.coef_bits, dp.coef_ll_bits):
        raise InputError(where, "haar.width_bits", f"at least the coefficient widths (coef.bits, coef.ll_bits) = "
                         f"{max(dp.coef_bits, dp.coef_ll_bits)}", dp.haar.width_bits)
    if dp.mac.acc_bits < max(dp.coef_bits, dp.coef_ll_bits) + dp.quant.weight_bits:
        raise InputError(where, "mac.acc_bits", f"at least the coefficient width + weight_bits = "
                         f"{max(dp.coef_bits, dp.coef_ll_bits) + dp.quant.weight_bits}", dp.mac.acc_bits)


class _DuplicateKey(yaml.YAMLError):
    """A key given twice in one YAML mapping: its key path and both 1-based line numbers."""

    def __init__(self, key_path: str, line: int, first_line: int):
        super().__init__(key_path)
        self.key_path, self.line, self.first_line = key_path, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key repeated within one mapping (PyYAML keeps the last silently)."""

    def construct_document(self, node):
        _check_unique_keys(node, "", set())
        return super().construct_document(node)


def _check_unique_keys(node, prefix: str, seen: set) -> None:
    """Raise `_DuplicateKey` for the first repeated scalar key in any mapping below `node`. `seen` holds the
    ids of nodes already checked, so an alias is walked once (no blow-up on alias bombs or cycles)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{prefix}.{key}" if prefix else str(key)
            if key is not None and key in first:
                raise _DuplicateKey(path, key_node.start_mark.line + 1, first[key])
            if key is not None:
                first[key] = key_node.start_mark.line + 1
            _check_unique_keys(value_node, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, f"{prefix}[{i}]", seen)


def _read_yaml(path: Path, where: str):
    if not path.exists():
        raise InputError(where, "", "an existing YAML file", "no such file")
    if path.is_dir():
        raise InputError(where, "", "a YAML file", "a directory")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise InputError(where, "", f"a YAML file under {_MAX_FILE_BYTES} bytes", path.stat().st_size)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(where, "", "a readable UTF-8 text file", type(e).__name__) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as e:
        raise InputError(where, e.key_path, f"each key once per mapping (first at line {e.first_line})",
                         f"it again at line {e.line}") from None
    except yaml.constructor.ConstructorError as e:
        mark = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise InputError(where, "", "plain YAML without language tags (e.g. !!python/object)",
                         f"a tag{mark}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f"line {mark.line + 1} column {mark.column + 1}" if mark else "unknown position"
        raise InputError(where, "", "valid YAML", f"{getattr(e, 'problem', 'a syntax error')} at {loc}") \
            from None
    if data is None:
        raise InputError(where, "", "a YAML mapping with at least name and clock_mhz", "an empty file")
    return data


@dataclass(frozen=True)
class _TopLevel:
    """The top-level scalars of the YAML (validation helper; mirrors HwSpec's scalar fields)."""
    name: str = _knob(None, "", required=True)
    clock_mhz: float = _knob(None, "", "MHz", 1e-3, 1e5, required=True)
    placement: Placement = _knob(Placement.COMPRESS_ON_WRITE, "")


def hw_from_dict(data, where: str = "<dict>") -> HwSpec:
    """Validate a mapping in the YAML layout (see docs/hw_schema.md) into a `HwSpec`.

    Raises `InputError` (one line naming `where` and the key path) on any unknown key, wrong type,
    out-of-range value or inconsistent combination.
    """
    _check_keys(where, "", data, _TOP_KEYS)
    top = _build(where, "", _TopLevel, {k: data[k] for k in _TOP_SCALARS if k in data})
    parts = {key: _build(where, key, cls, data.get(key))
             for key, (_, cls) in _SECTIONS.items() if not key.startswith("sram.")}
    sram = data.get("sram")
    if sram is None:
        raise InputError(where, "sram", "a mapping with ifmap, weight and ofmap buffers", "nothing (missing)")
    _check_keys(where, "sram", sram, _SRAM_KEYS)
    for sub in _SRAM_KEYS:
        if sram.get(sub) is None:
            raise InputError(where, f"sram.{sub}", "a buffer mapping with size_bytes", "nothing (missing)")
        parts[f"sram.{sub}"] = _build(where, f"sram.{sub}", SramSpec, sram[sub])
    hw = HwSpec(name=top.name, clock_mhz=top.clock_mhz, placement=top.placement,
                datapath=DatapathSpec(quant=parts["quant"], haar=parts["haar"], topk=parts["topk"],
                                      mac=parts["mac"], requant=parts["requant"], coef=parts["coef"]),
                ifmap_sram=parts["sram.ifmap"], weight_sram=parts["sram.weight"],
                ofmap_sram=parts["sram.ofmap"], dram=parts["dram"], energy=parts["energy"])
    _cross_checks(where, hw)
    return hw


def load_hw(path: str | os.PathLike) -> HwSpec:
    """Load and strictly validate a hardware YAML file.

    Parameters
    ----------
    path : str or path-like
        YAML file in the layout of docs/hw_schema.md.

    Returns
    -------
    HwSpec

    Raises
    ------
    InputError
        One line ``<file>: <key.path>: expected ..., got ...`` (the file as `path` was given) for a missing
        file, a directory, an empty file, invalid YAML, a language tag, a key repeated in one mapping (with
        both lines), an unknown key (with the closest valid key), a wrong type, an
        out-of-range value, or an accumulator narrower than act_bits + weight_bits.
    """
    where = os.fspath(path)  # errors name the path as the caller gave it
    return hw_from_dict(_read_yaml(Path(path), where), where=where)


def _enum_plain(obj):
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj):  # None = a default that follows another field: left out, as in YAML
        return {f.name: _enum_plain(getattr(obj, f.name)) for f in fields(obj) if getattr(obj, f.name) is not None}
    return obj


def spec_to_dict(hw: HwSpec) -> dict:
    """`hw` as a plain dict in the YAML layout (enums as their strings); `hw_from_dict` inverts it."""
    plain = _enum_plain(hw)
    out = {k: plain[k] for k in _TOP_SCALARS}
    for key, (attr_path, _) in _SECTIONS.items():
        value = plain
        for a in attr_path:
            value = value[a]
        if key.startswith("sram."):
            out.setdefault("sram", {})[key.split(".", 1)[1]] = value
        else:
            out[key] = value
    return out


def spec_hash(hw: HwSpec) -> str:
    """sha256 (hex) of the canonical JSON dump of `spec_to_dict(hw)` (sorted keys, no spaces)."""
    text = json.dumps(spec_to_dict(hw), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def schema_rows():
    """Yield (yaml key path, type, unit, default, allowed values, description) for every YAML field."""
    groups = [("", _TopLevel)] + [(k, cls) for k, (_, cls) in _SECTIONS.items()]
    for prefix, cls in groups:
        hints = typing.get_type_hints(cls)
        source = HwSpec if cls is _TopLevel else cls
        for f in fields(cls):
            doc_f = {g.name: g for g in fields(source)}[f.name]
            typ, meta = _plain_type(hints[f.name]), doc_f.metadata
            if isinstance(typ, type) and issubclass(typ, enum.Enum):
                tname, allowed = "enum", ", ".join(f"`{m.value}`" for m in typ)
            else:
                tname = typ.__name__
                allowed = ("1-64 characters" if typ is str else
                           f"{meta['lo']} .. {meta['hi']}" if typ is int else f"{meta['lo']:g} .. {meta['hi']:g}")
            default = ("required" if meta.get("required") else f"`{meta['default_doc']}`" if meta.get("default_doc")
                       else f"`{_enum_plain(doc_f.default)}`")
            key = f"{prefix}.{f.name}" if prefix else f.name
            yield key, tname, meta.get("unit", ""), default, allowed, meta.get("doc", "")


def schema_markdown() -> str:
    """The field table of docs/hw_schema.md, generated from the dataclass metadata."""
    lines = ["| key | type | unit | default | allowed | meaning |", "|---|---|---|---|---|---|"]
    for row in schema_rows():
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"

"""Hardware specification: nested frozen dataclasses, loaded and validated from YAML.

Units are in the field names: ``_bits``, ``_bytes``, ``_mhz``, ``_pj``, ``_per_cycle``.
Knobs are Enums; code compares members, never strings. ``load_hw(path)`` (below) is the only way a
YAML file becomes a `HwSpec`; every error it raises is a one-line `InputError` naming file and field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "Normalize", "Rounding", "Metric", "TopkMode", "Overflow", "Dataflow", "RequantMode",
    "Placement", "WeightGranularity", "ActSign", "CalibMethod",
    "QuantSpec", "HaarSpec", "TopkSpec", "MacSpec", "RequantSpec", "DatapathSpec",
    "SramSpec", "DramSpec", "EnergySpec", "HwSpec",
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
    SATURATE = "saturate"
    WRAP = "wrap"


class Dataflow(enum.Enum):
    WEIGHT_STATIONARY = "weight_stationary"
    OUTPUT_STATIONARY = "output_stationary"
    INPUT_STATIONARY = "input_stationary"


class RequantMode(enum.Enum):
    """Output requantization: gemmlowp fixed point, float32 as onnxruntime QLinearConv, or a pure shift."""
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


@dataclass(frozen=True)
class QuantSpec:
    """Activation / weight quantization. Bits in 2..16."""
    act_bits: int = 8
    weight_bits: int = 8
    act_sign: ActSign = ActSign.AUTO
    weight_granularity: WeightGranularity = WeightGranularity.PER_TENSOR
    calib: CalibMethod = CalibMethod.MSE
    percentile: float = 99.99


@dataclass(frozen=True)
class HaarSpec:
    """Shift-add Haar unit. ``width_bits`` is the declared coefficient register width (saturates beyond)."""
    levels: int = 3
    normalize: Normalize = Normalize.PER_LEVEL
    rounding: Rounding = Rounding.HALF_UP
    width_bits: int = 16
    elems_per_cycle: int = 16


@dataclass(frozen=True)
class TopkSpec:
    """Joint top-k selector. ``tile_positions`` is T for the ``tiled`` mode."""
    metric: Metric = Metric.L2
    mode: TopkMode = TopkMode.EXACT
    tile_positions: int = 64
    elems_per_cycle: int = 16


@dataclass(frozen=True)
class MacSpec:
    """MAC array of rows x cols int multipliers with ``acc_bits`` accumulators."""
    rows: int = 16
    cols: int = 16
    dataflow: Dataflow = Dataflow.WEIGHT_STATIONARY
    acc_bits: int = 32
    overflow: Overflow = Overflow.SATURATE


@dataclass(frozen=True)
class RequantSpec:
    mode: RequantMode = RequantMode.FIXED_POINT


@dataclass(frozen=True)
class DatapathSpec:
    """Everything the bit-accurate datapath needs (no memory or energy figures)."""
    quant: QuantSpec = field(default_factory=QuantSpec)
    haar: HaarSpec = field(default_factory=HaarSpec)
    topk: TopkSpec = field(default_factory=TopkSpec)
    mac: MacSpec = field(default_factory=MacSpec)
    requant: RequantSpec = field(default_factory=RequantSpec)


@dataclass(frozen=True)
class SramSpec:
    """One on-chip SRAM buffer."""
    size_bytes: int
    word_bits: int = 64
    banks: int = 1
    read_energy_pj: float = 0.0   # per word access
    write_energy_pj: float = 0.0  # per word access


@dataclass(frozen=True)
class DramSpec:
    bandwidth_bytes_per_cycle: float = 8.0
    energy_pj_per_byte: float = 0.0


@dataclass(frozen=True)
class EnergySpec:
    """Per-operation energies in pJ (defaults come from the YAML; cite sources there)."""
    mac_pj: float = 0.0        # one act_bits x weight_bits multiply-accumulate
    add_pj: float = 0.0        # one Haar add/sub at its declared width
    compare_pj: float = 0.0    # one top-k energy compare


@dataclass(frozen=True)
class HwSpec:
    """A whole accelerator: datapath knobs, buffers, DRAM, energies, compressor placement."""
    name: str
    clock_mhz: float
    datapath: DatapathSpec
    ifmap_sram: SramSpec
    weight_sram: SramSpec
    ofmap_sram: SramSpec
    dram: DramSpec
    energy: EnergySpec
    placement: Placement = Placement.COMPRESS_ON_WRITE

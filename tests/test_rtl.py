"""The Verilog Haar unit (rtl/) must equal wccsim's integer Haar bit for bit, saturation counts included.

Each test writes $readmemh vectors, compiles a testbench with Icarus Verilog (iverilog -g2005) and runs it
with vvp in a temporary directory; the testbench prints ``SAT <n>`` and ``PASS``/``FAIL``.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from wccsim.datapath.haar import forward_int, inverse_int
from wccsim.hw import HaarSpec, Normalize, Rounding, load_hw
from wccsim.trace import open_trace
from wccsim.simulate import simulate_layer
from wccsim.vectors import Tile, crop_tile, haar_testbenches, read_manifest, to_hex_words, write_vectors

ROOT = Path(__file__).resolve().parents[1]
RTL = ROOT / "rtl"
TRACE = ROOT / "traces" / "ppocrv4_det.npz"
_ROUND_CODE = {Rounding.HALF_UP: 0, Rounding.FLOOR: 1, Rounding.HALF_EVEN: 2}

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) not on PATH; install it with `apt-get install iverilog`")


def _simulate(tmp: Path, tb: str, params: dict, inp: str, expect: str) -> tuple[str, int]:
    """Compile and run ``rtl/tb/<tb>.v`` on hex texts; return (the PASS/FAIL line, saturation count)."""
    (tmp / "in.hex").write_text(inp)
    (tmp / "expect.hex").write_text(expect)
    return _simulate_files(tmp, tb, params, tmp / "in.hex", tmp / "expect.hex")


def _simulate_files(tmp: Path, tb: str, params: dict, inp: Path, expect: Path) -> tuple[str, int]:
    """Compile and run ``rtl/tb/<tb>.v`` on hex files; return (the PASS/FAIL line, saturation count)."""
    unit = {"tb_haar_fwd": "haar_fwd2x2.v", "tb_haar_inv": "haar_inv2x2.v"}[tb]
    defs = [f"-P{tb}.{k}={int(v)}" for k, v in params.items()]
    subprocess.run(["iverilog", "-g2005", "-I", str(RTL), "-s", tb, "-o", str(tmp / "sim.vvp"), *defs,
                    str(RTL / unit), str(RTL / "tb" / f"{tb}.v")], check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", str(tmp / "sim.vvp"), f"+in={inp}", f"+expect={expect}"],
                         check=True, capture_output=True, text=True)
    verdict = re.search(r"^(PASS|FAIL|ERROR)\b.*$", run.stdout, re.M)
    sat = re.search(r"^SAT (\d+)$", run.stdout, re.M)
    assert verdict and sat, run.stdout
    return verdict.group(0), int(sat.group(1))


def fwd_params(spec: HaarSpec, shape: tuple, in_bits: int) -> dict:
    """tb_haar_fwd parameters for a (N, C, H, W) signed ``in_bits`` input under ``spec``."""
    n, c, h, w = shape
    return dict(NC=n * c, H=h, W=w, LEVELS=spec.levels, IN_W=in_bits, IN_SIGNED=1, OUT_W=spec.width_bits,
                SHIFT=spec.normalize is Normalize.PER_LEVEL, ROUND=_ROUND_CODE[spec.rounding])


def inv_params(spec: HaarSpec, shape: tuple, in_bits: int, width_bits: int, out_bits: int) -> dict:
    """tb_haar_inv parameters for an (N, C, h, w) output from ``in_bits``-wide layout-order words."""
    n, c, h, w = shape
    return dict(NC=n * c, H=h, W=w, LEVELS=spec.levels, IN_W=in_bits, REG_W=width_bits, OUT_W=out_bits,
                ROUND=_ROUND_CODE[spec.rounding], DEFERRED=spec.normalize is Normalize.DEFERRED)


_SPECS = [(norm, rnd) for norm in Normalize for rnd in Rounding]


@pytest.mark.parametrize("norm, rnd", _SPECS, ids=[f"{n.value}-{r.value}" for n, r in _SPECS])
def test_forward_matches_haar_with_saturation(tmp_path, norm, rnd):
    # 10-bit registers saturate on full-scale 8-bit blocks; odd H, W exercise the zero padding.
    spec = HaarSpec(levels=3, normalize=norm, rounding=rnd, width_bits=10)
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (2, 3, 9, 13))
    x[0, 0, :8, :8], x[0, 1, :8, :8] = 127, -128
    ref = forward_int(x, spec, 8)
    verdict, sat = _simulate(tmp_path, "tb_haar_fwd", fwd_params(spec, x.shape, 8),
                             to_hex_words(x, 8, True), to_hex_words(ref.coef, spec.width_bits, True))
    assert verdict.startswith("PASS")
    assert sat == ref.saturations > 0


@pytest.mark.parametrize("norm, rnd", _SPECS, ids=[f"{n.value}-{r.value}" for n, r in _SPECS])
def test_inverse_matches_haar_with_saturation(tmp_path, norm, rnd):
    # 12-bit input words into 10-bit registers: the load saturates some, the levels saturate others.
    spec = HaarSpec(levels=2, normalize=norm, rounding=rnd, width_bits=10)
    rng = np.random.default_rng(11)
    coef = rng.integers(-2048, 2048, (1, 3, 12 * 8)) >> rng.integers(0, 12, (1, 3, 12 * 8))
    ref, ref_sat = inverse_int(coef, 11, 7, spec, spec.width_bits)
    verdict, sat = _simulate(tmp_path, "tb_haar_inv", inv_params(spec, ref.shape, 12, 10, 10),
                             to_hex_words(coef, 12, True), to_hex_words(ref, 10, True))
    assert verdict.startswith("PASS")
    assert sat == ref_sat > 0


def test_testbench_reports_mismatches(tmp_path):
    spec = HaarSpec(levels=1)
    x = np.arange(-8, 8).reshape(1, 1, 4, 4)
    expect = forward_int(x, spec, 8).coef.copy()
    expect[0, 0, [1, 5]] += 1
    verdict, _ = _simulate(tmp_path, "tb_haar_fwd", fwd_params(spec, x.shape, 8),
                           to_hex_words(x, 8, True), to_hex_words(expect, spec.width_bits, True))
    assert verdict.startswith("FAIL 2 mismatches")


@pytest.fixture(scope="module")
def first_layer():
    """The first layer of the bundled PP-OCRv4 detection trace."""
    if not TRACE.is_file():
        pytest.skip(f"bundled trace {TRACE.relative_to(ROOT)} not present")
    trace = open_trace(TRACE)
    return trace.layer(trace.layers[0].name)


_LAYER_CASES = [(n, r) for n in Normalize for r in (Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR)]


@pytest.mark.parametrize("norm, rnd", _LAYER_CASES, ids=[f"{n.value}-{r.value}" for n, r in _LAYER_CASES])
def test_rtl_equals_exported_layer_vectors(tmp_path, first_layer, norm, rnd):
    """A 16x16 tile of a real layer: RTL forward on input_q == haar_coef, RTL inverse on zero_filled ==
    inverse, word for word, with the datapath's saturation counts."""
    hw = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")
    haar = dataclasses.replace(hw.datapath.haar, normalize=norm, rounding=rnd)
    hw = dataclasses.replace(hw, datapath=dataclasses.replace(hw.datapath, haar=haar))
    tile = Tile(16, 16, 8, 24)
    x = crop_tile(first_layer.x, tile)
    res = simulate_layer(x, first_layer.w, first_layer.b, hw.datapath, 0.5, stride=first_layer.stride)
    out = write_vectors(res, hw, tmp_path / "vectors", first_layer.name, tile=tile, rate=0.5)
    manifest = read_manifest(out)
    assert manifest["datapath"]["haar"]["normalize"] == norm.value
    expected_sat = {"tb_haar_fwd": res.counters["haar_saturations"],
                    "tb_haar_inv": res.counters["inverse_saturations"]}
    for tb, case in haar_testbenches(manifest).items():
        verdict, sat = _simulate_files(tmp_path, tb, case["params"], out / case["in"], out / case["expect"])
        assert verdict.startswith("PASS"), (tb, verdict)
        assert sat == expected_sat[tb]

"""The layout as a contract: import layers (import-linter), imports at module top, no callable-module tricks,
and the rules every side shares agreeing between the datapath, the reference and the cost model."""

import ast
import dataclasses
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wccsim
from wccsim import api
from wccsim.cost import layer_cost
from wccsim.cost.bops import hw_bops, paper_bops
from wccsim.datapath import chain
from wccsim.hw import DatapathSpec, HaarSpec, load_hw
from wccsim.reference import ref_wcc
from wccsim.rules import kept_positions, padded_shape, rate_fraction
from wccsim.runner import run
from wccsim.shape import LayerShape
from wccsim.trace import LayerData, write_trace

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wccsim"
HW = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")


def test_import_linter_contracts_hold():
    """`lint-imports` with the contracts of pyproject.toml: exit 0, every contract KEPT."""
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extra (pip install -e '.[test]')"
    r = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and "BROKEN" not in r.stdout


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_wccsim_import_inside_a_function():
    """wccsim's own modules are imported at module top (optional extras such as onnx, torch, dask stay lazy)."""
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "wccsim" or n.startswith("wccsim.") or (isinstance(node, ast.ImportFrom) and node.level)
                       for n in names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} in {fn.name}()")
    assert not found, found


def test_no_module_swaps_its_class():
    """No module makes itself callable by assigning ``__class__`` (plain functions in `wccsim.api` instead)."""
    offenders = [str(p.relative_to(ROOT)) for p in _modules()
                 if any(isinstance(n, ast.Attribute) and n.attr == "__class__" and isinstance(n.ctx, ast.Store)
                        for n in ast.walk(ast.parse(p.read_text())))]
    assert not offenders


def test_package_functions_are_the_api():
    for name in ("run", "sweep", "report", "simulate_layer", "calibrate_layer", "run_datapath"):
        assert callable(getattr(wccsim, name)) and getattr(wccsim, name) is getattr(api, name)
        assert not isinstance(getattr(wccsim, name), type(wccsim)), name


# ------------------------------------------------------------------------------------- shared rules

def test_a_third_keeps_what_the_user_asked_for():
    assert kept_positions(1 / 3, 192) == 64 and kept_positions(1 / 3, 960) == 320
    assert kept_positions(float("0.33333333333333331"), 960) == 320          # the 17-digit print
    assert kept_positions(0.29, 100) == 29 and kept_positions(1e-9, 64) == 1


_RATE = st.integers(1, 64).flatmap(lambda q: st.tuples(st.integers(1, q), st.just(q)))


@settings(max_examples=300, deadline=None)
@given(pq=_RATE, h=st.integers(1, 70), w=st.integers(1, 70), levels=st.integers(1, 4))
def test_kept_positions_of_a_fraction_printed_in_17_digits(pq, h, w, levels):
    """A rate written as the 17-digit print of p/q keeps floor(P * p / q) (at least 1) positions, odd and even
    maps alike; the cost model's k (and so its MACs and BOPs) is the same k."""
    p, q = pq
    rate = float(f"{p / q:.17g}")
    assert rate_fraction(rate) == Fraction(p, q)
    hp, wp = padded_shape(h, w, levels)
    k = max(1, (hp * wp * p) // q)
    assert kept_positions(rate, hp * wp) == k
    shape = LayerShape.pointwise("l", 5, 7, h, w)
    assert shape.wcc_grid(levels) == (hp, wp) and shape.wcc_kept(rate, levels) == k
    hw = HW if levels == HW.datapath.haar.levels else _with_levels(HW, levels)
    cost = layer_cost(shape, hw, "wcc", rate, 8, 8)
    assert cost.macs == 5 * 7 * k
    assert hw_bops(shape, True, rate, 8, 8, levels) >= 64 * 5 * 7 * k
    assert paper_bops(shape, True, rate, 8, 8, levels=levels) == pytest.approx(
        64 * (rate * shape.macs + float(sum(Fraction(1, 4 ** i) for i in range(levels))) * 12 * hp * wp))


def _with_levels(hw, levels):
    return dataclasses.replace(hw, datapath=dataclasses.replace(hw.datapath, haar=dataclasses.replace(
        hw.datapath.haar, levels=levels)))


@settings(max_examples=40, deadline=None)
@given(pq=_RATE, h=st.integers(1, 19), w=st.integers(1, 19), levels=st.integers(1, 3), seed=st.integers(0, 99))
def test_datapath_reference_and_cost_keep_the_same_k(pq, h, w, levels, seed):
    """The integer datapath (`chain.front`), the float reference and the cost model keep the same k."""
    rate = float(f"{pq[0] / pq[1]:.17g}")
    x = np.random.default_rng(seed).integers(-100, 100, size=(1, 3, h, w))
    spec = DatapathSpec(haar=HaarSpec(levels=levels))
    k_datapath = chain.front(x, 8, spec, rate).sel.k
    k_ref = ref_wcc(x.astype(float), np.ones((2, 3)), None, rate, levels).k
    k_cost = layer_cost(LayerShape.pointwise("l", 3, 2, h, w), _with_levels(HW, levels), "wcc", rate, 8, 8).macs // 6
    assert k_datapath == k_ref == k_cost == max(1, math.floor(Fraction(pq[0], pq[1]) * math.prod(padded_shape(h, w, levels))))


def test_every_wcc_row_executes_cin_cout_k_macs(tmp_path):
    """layers.csv at a third: in every wcc row, macs == cin * cout * k (per image) and k = floor(P / 3)."""
    rng = np.random.default_rng(1)
    layers = []
    for i, (cin, cout, h, w) in enumerate([(4, 6, 9, 12), (6, 5, 24, 40), (3, 8, 17, 17)]):
        x = np.maximum(rng.normal(size=(2, cin, h, w)), 0).astype(np.float32)
        layers.append(LayerData(f"conv{i}", x, rng.normal(size=(cout, cin)).astype(np.float32), None, None, 1))
    write_trace(tmp_path / "t.npz", {"network": "tiny"}, layers)
    df = run(HW, tmp_path / "t.npz", rate=1 / 3)
    wcc = df[df.scheme == "wcc"]
    assert len(wcc) == 3
    assert (wcc.macs == wcc.cin * wcc.cout * wcc.k).all()
    assert (wcc.k == wcc.positions // 3).all() and (wcc.positions % 3 != 0).any()

"""wccsim run: library table, CLI files, determinism, input errors that leave outputs untouched."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wccsim.cli import main
from wccsim.errors import InputError
from wccsim.results import COLUMNS, SCHEMES, TOTAL_COLUMNS, totals
from wccsim.runner import run
from wccsim.trace import LayerData, write_trace

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hw_configs" / "edge_npu.yaml"
BUNDLED = ROOT / "traces" / "ppocrv4_det.npz"

# Columns issue #5 requires in every row.
REQUIRED = ("layer", "cin", "cout", "h", "w", "rate", "k", "act_bits", "weight_bits", "macs", "bops",
            "dram_read_bytes", "dram_write_bytes", "sram_read_bytes", "sram_write_bytes", "bitmap_bytes",
            "cycles", "bound", "energy_pj", "mse_compress", "mse_quant", "mse_total", "sqnr_compress_db",
            "sqnr_quant_db", "sqnr_total_db", "max_abs_err", "acc_overflows", "haar_saturations", "scheme")


def write_tiny_trace(path: Path, n_layers: int = 3, seed: int = 0) -> Path:
    """A few small post-ReLU 1x1 layers (odd sizes, so Haar padding is exercised), written with write_trace."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(n_layers):
        cin, cout, h, w = 4 + 2 * i, 6 + i, 9 + i, 12
        x = np.maximum(rng.normal(size=(1, cin, h, w)), 0).astype(np.float32)
        wt = rng.normal(size=(cout, cin)).astype(np.float32)
        b = rng.normal(size=cout).astype(np.float32) if i % 2 == 0 else None
        y = np.einsum("oc,nchw->nohw", wt.astype(np.float64), x.astype(np.float64))
        if b is not None:
            y = y + b[None, :, None, None]
        layers.append(LayerData(f"conv{i}", x, wt, b, y.astype(np.float32), 1))
    write_trace(path, {"network": "tiny", "source": {"tool": "tests"}}, layers)
    return path


def snapshot(directory: Path) -> dict:
    """{relative path: bytes} of every file under a directory (missing directory -> {})."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_trace(tmp_path_factory.mktemp("trace") / "tiny.npz")


def test_library_table_has_every_scheme_and_column(tiny):
    df = run(HW, tiny, rate=0.5)
    assert tuple(df.columns) == COLUMNS
    assert set(REQUIRED) <= set(df.columns)
    assert len(df) == 3 * len(SCHEMES)
    assert list(df.scheme[:4]) == list(SCHEMES)
    assert list(df.layer.unique()) == ["conv0", "conv1", "conv2"]
    wcc, int8 = df[df.scheme == "wcc"], df[df.scheme == "int8"]
    assert (wcc.k == np.floor(0.5 * wcc.positions)).all()
    assert (int8.act_bits == 8).all() and (int8.weight_bits == 8).all() and (int8.mse_compress == 0).all()
    assert (wcc.eff_bits_per_act == 4.0).all()
    assert (df.bound.isin(["compute", "memory"])).all()
    assert (wcc.macs == wcc.cin * wcc.cout * wcc.k).all() and (int8.macs == int8.cin * int8.cout * int8.k).all()
    assert (wcc.sqnr_total_db < wcc.sqnr_compress_db).all()


def test_rate_one_is_lossless_compression(tiny):
    df = run(HW, tiny, rate=1.0, layers="conv1")
    wcc = df[df.scheme == "wcc"].iloc[0]
    assert wcc.k == wcc.positions and wcc.mse_compress == pytest.approx(0.0, abs=1e-20)


def test_package_function_run_is_the_library_run_in_any_import_order(tiny):
    import wccsim.runner  # noqa: F401 - no module of the package is named run

    assert not isinstance(wccsim.run, type(sys)) and wccsim.run is run
    pd.testing.assert_frame_equal(wccsim.run(HW, tiny, rate=0.25, layers="conv0"),
                                  run(HW, tiny, rate=0.25, layers="conv0"))


def test_totals_network_sqnr_of_one_layer_is_the_layer_sqnr(tiny):
    df = run(HW, tiny, rate=0.25, layers="conv2")
    tot = totals(df)
    assert tuple(tot.columns) == TOTAL_COLUMNS and len(tot) == len(SCHEMES)
    for scheme in SCHEMES:
        layer = df[df.scheme == scheme].iloc[0]
        t = tot[tot.scheme == scheme].iloc[0]
        assert t.sqnr_total_db == pytest.approx(layer.sqnr_total_db, rel=1e-9)
        assert t.dram_read_bytes == layer.dram_read_bytes


def test_cli_writes_table_and_metadata_deterministically(tiny, tmp_path, capsys):
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        assert main(["run", "--hw", str(HW), "--trace", str(tiny), "--rate", "0.25", "--out", str(out)]) == 0
        outs.append(out)
    printed = capsys.readouterr().out
    assert "int8_sqnr_db" in printed and "network totals" in printed
    a, b = snapshot(outs[0]), snapshot(outs[1])
    assert set(a) >= {"layers.csv", "totals.csv", "run.json"}
    assert a["layers.csv"] == b["layers.csv"] and a["totals.csv"] == b["totals.csv"]
    meta_a, meta_b = (json.loads(s["run.json"]) for s in (a, b))
    meta_a.pop("created"), meta_b.pop("created")
    assert meta_a == meta_b
    assert meta_a["trace"]["sha256"] and len(meta_a["hw_hash"]) == 64 and meta_a["options"]["rate"] == 0.25
    assert {t["scheme"] for t in meta_a["totals"]} == set(SCHEMES)
    table = pd.read_csv(outs[0] / "layers.csv")
    lib = run(HW, tiny, rate=0.25)
    pd.testing.assert_frame_equal(table, lib, check_dtype=False)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_cli_stdout_formats(tiny, tmp_path, capsys, fmt):
    assert main(["run", "--hw", str(HW), "--trace", str(tiny), "--layers", "conv1", "--out", str(tmp_path),
                 "--format", fmt]) == 0
    text = capsys.readouterr().out
    if fmt == "csv":
        assert text.splitlines()[0].split(",") == list(COLUMNS)
    else:
        doc = json.loads(text)
        assert len(doc["layers"]) == len(SCHEMES) and len(doc["totals"]) == len(SCHEMES)


def test_default_out_dir(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--hw", str(HW), "--trace", str(tiny), "--layers", "conv0"]) == 0
    assert (tmp_path / "runs" / "tiny_edge_npu" / "layers.csv").is_file()


BAD = {
    "rate 0": ["--rate", "0"],
    "rate > 1": ["--rate", "1.5"],
    "rate nan": ["--rate", "nan"],
    "rate text": ["--rate", "half"],
    "act bits 1": ["--act-bits", "1"],
    "act bits 17": ["--act-bits", "17"],
    "weight bits 20": ["--weight-bits", "20"],
    "unknown glob": ["--layers", "nope*"],
    "bad calib": ["--calib", "magic"],
    "bad format": ["--format", "xml"],
}


@pytest.mark.parametrize("extra", list(BAD.values()), ids=list(BAD))
def test_bad_arguments_exit_2_and_leave_outputs_untouched(tiny, tmp_path, capsys, extra):
    out = tmp_path / "out"
    out.mkdir()
    (out / "layers.csv").write_text("previous results\n")
    (out / "run.json").write_text("{}\n")
    before = snapshot(out)
    assert main(["run", "--hw", str(HW), "--trace", str(tiny), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1
    assert snapshot(out) == before


@pytest.mark.parametrize("which", ["hw", "trace"])
def test_missing_files_exit_2_and_write_nothing(tiny, tmp_path, capsys, which):
    args = {"hw": str(HW), "trace": str(tiny)}
    args[which] = str(tmp_path / "missing.file")
    out = tmp_path / "out"
    assert main(["run", "--hw", args["hw"], "--trace", args["trace"], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing.file" in err and err.count("\n") == 1
    assert not out.exists()


def test_library_rejects_bad_options(tiny):
    with pytest.raises(InputError, match="rate"):
        run(HW, tiny, rate=0.0)
    with pytest.raises(InputError, match="act_bits"):
        run(HW, tiny, act_bits=True)
    with pytest.raises(InputError, match="layers"):
        run(HW, tiny, layers="conv9")


@pytest.mark.skipif(not BUNDLED.is_file(), reason="bundled trace traces/ppocrv4_det.npz not present")
def test_end_to_end_on_a_slice_of_the_bundled_trace(tmp_path, capsys):
    glob = "p2o_Conv_3[02]"  # two 384-channel 16x16 layers of PP-OCRv4 det: a fast, real slice
    assert main(["run", "--hw", str(HW), "--trace", str(BUNDLED), "--layers", glob, "--rate", "0.25",
                 "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "layers.csv")
    assert list(df.layer.unique()) == ["p2o_Conv_30", "p2o_Conv_32"]
    wcc, int8 = df[df.scheme == "wcc"], df[df.scheme == "int8"]
    assert (wcc.dram_read_bytes.to_numpy() < int8.dram_read_bytes.to_numpy()).all()
    assert (wcc.bops.to_numpy() < int8.bops.to_numpy()).all()
    # WCC at 2 bits/activation beats uniform 2-bit quantization on real activations (the paper's claim).
    uni = df[df.scheme == "uniform_nbit"]
    assert (wcc.sqnr_total_db.to_numpy() > uni.sqnr_total_db.to_numpy()).all()

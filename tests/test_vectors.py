"""Tests for wccsim.vectors: $readmemh hex words, manifest, exact round trip, width errors, atomic writes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from wccsim.cli import main
from wccsim.simulate import simulate_layer
from wccsim.errors import InputError
from wccsim.hw import DatapathSpec, HaarSpec, Normalize, Rounding
from wccsim.trace import LayerData, write_trace
from wccsim.vectors import (MANIFEST, Tile, crop_tile, from_hex_words, parse_tile, read_manifest,
                            read_vectors, to_hex_words, write_vectors)


@dataclass(frozen=True)
class _Stage:
    values: np.ndarray
    width_bits: int
    signed: bool
    scale: object
    order: str


def _corners(width_bits: int, signed: bool) -> np.ndarray:
    lo, hi = (-(1 << (width_bits - 1)), (1 << (width_bits - 1)) - 1) if signed else (0, (1 << width_bits) - 1)
    hi = min(hi, np.iinfo(np.int64).max)
    return np.array([lo, hi, 0, lo + 1, hi - 1, (lo + hi) // 2], dtype=np.int64)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("width_bits", [1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 31, 32, 33, 48, 63, 64])
def test_hex_words_round_trip_corners(width_bits, signed):
    v = _corners(width_bits, signed)
    text = to_hex_words(v, width_bits, signed)
    lines = text.splitlines()
    assert len(lines) == v.size and text.endswith("\n")
    assert {len(s) for s in lines} == {-(-width_bits // 4)}
    np.testing.assert_array_equal(from_hex_words(text, width_bits, signed), v)


def test_hex_words_twos_complement_digits():
    assert to_hex_words(np.array([-1, -128, 127, 0]), 8, True) == "ff\n80\n7f\n00\n"
    assert to_hex_words(np.array([-1, -256, 255]), 9, True) == "1ff\n100\n0ff\n"
    assert to_hex_words(np.array([0, 1]), 1, False) == "0\n1\n"


@pytest.mark.parametrize("value, width_bits, signed", [
    (128, 8, True), (-129, 8, True), (256, 8, False), (-1, 8, False), (1, 1, True), (2, 1, False),
])
def test_value_outside_width_is_an_error(value, width_bits, signed):
    with pytest.raises(ValueError, match=r"stage 'acc'.*does not fit"):
        to_hex_words(np.array([0, value]), width_bits, signed, name="acc")


def test_non_integer_values_are_an_error():
    with pytest.raises(ValueError, match="integer"):
        to_hex_words(np.array([0.5]), 8, True)


@pytest.mark.parametrize("text, match", [("1ff\n", "wider"), ("zz\n", "hex"), ("x\n", "hex"), ("-1\n", "bare"),
                                         ("0x1f\n", "bare"), ("1_0\n", "bare")])
def test_malformed_words_are_errors(text, match):
    with pytest.raises(ValueError, match=match):
        from_hex_words(text, 8, True)


def _fake_result(rng) -> SimpleNamespace:
    stages = {
        "input_q": _Stage(rng.integers(-128, 128, (1, 3, 5, 6)), 8, True, 0.02, "N,C,H,W"),
        "bitmap": _Stage(rng.integers(0, 2, (1, 64)), 1, False, None, "N,P"),
        "acc": _Stage(rng.integers(-(1 << 31), 1 << 31, (1, 4, 7)), 32, True, np.array([0.1, 0.2]), "N,O,K"),
    }
    return SimpleNamespace(stages=stages)


def test_write_read_round_trip_and_manifest(tmp_path):
    res = _fake_result(np.random.default_rng(0))
    out = write_vectors(res, DatapathSpec(), tmp_path / "v", "layer0", tile={"y0": 0, "x0": 0, "h": 5, "w": 6},
                        rate=0.5)
    back = read_vectors(out)
    assert list(back) == list(res.stages)
    for name, st in res.stages.items():
        assert back[name].dtype == np.int64
        np.testing.assert_array_equal(back[name], st.values)
    man = read_manifest(out)
    assert man["layer"] == "layer0" and man["rate"] == 0.5 and man["datapath"]["haar"]["normalize"] == "per_level"
    entry = {e["stage"]: e for e in man["stages"]}
    assert entry["acc"]["width_bits"] == 32 and entry["acc"]["signed"] is True and entry["acc"]["shape"] == [1, 4, 7]
    assert entry["bitmap"]["signed"] is False and entry["acc"]["scale"] == [0.1, 0.2]


def test_width_error_writes_nothing(tmp_path):
    res = _fake_result(np.random.default_rng(1))
    res.stages["bad"] = _Stage(np.array([300]), 8, True, 1.0, "N")
    with pytest.raises(ValueError, match="'bad'"):
        write_vectors(res, DatapathSpec(), tmp_path / "v", "layer0")
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_previous_vectors(tmp_path):
    rng = np.random.default_rng(2)
    write_vectors(_fake_result(rng), DatapathSpec(), tmp_path / "v", "first")
    res = _fake_result(rng)
    del res.stages["bitmap"]
    write_vectors(res, DatapathSpec(), tmp_path / "v", "second")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["acc.hex", "input_q.hex", MANIFEST]
    assert read_manifest(tmp_path / "v")["layer"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


def test_refuses_to_replace_foreign_directory(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="manifest"):
        write_vectors(_fake_result(np.random.default_rng(3)), DatapathSpec(), tmp_path / "v", "x")
    assert (tmp_path / "v" / "notes.txt").read_text() == "mine"


def test_reader_rejects_bad_directories(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_vectors(tmp_path)
    out = write_vectors(_fake_result(np.random.default_rng(4)), DatapathSpec(), tmp_path / "v", "x")
    (out / "acc.hex").write_text("00000000\n")
    with pytest.raises(InputError, match="words for shape"):
        read_vectors(out)
    man = json.loads((out / MANIFEST).read_text())
    man["version"] = 99
    (out / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(InputError, match="version"):
        read_vectors(out)


def _layer(rng, n=1, cin=6, cout=5, h=11, w=9):
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    x[:, :, :4, :4] *= 8.0
    return x, (rng.standard_normal((cout, cin)) * 0.3).astype(np.float32), rng.standard_normal(cout).astype(np.float32)


@pytest.mark.parametrize("normalize", list(Normalize))
def test_real_layer_round_trips_every_stage(tmp_path, normalize):
    spec = DatapathSpec(haar=HaarSpec(normalize=normalize, rounding=Rounding.HALF_EVEN))
    x, w, b = _layer(np.random.default_rng(5))
    res = simulate_layer(x, w, b, spec, 0.4)
    out = write_vectors(res, spec, tmp_path / "v", "toy", rate=0.4)
    back = read_vectors(out)
    assert list(back) == list(res.stages)  # hardware order kept
    for name, st in res.stages.items():
        assert back[name].dtype == np.int64 and back[name].shape == st.values.shape
        np.testing.assert_array_equal(back[name], st.values, err_msg=name)
    for entry in read_manifest(out)["stages"]:
        st = res.stages[entry["stage"]]
        assert (entry["width_bits"], entry["signed"], entry["order"]) == (st.width_bits, st.signed, st.order)
        assert entry["zero_point"] == st.zero_point
        assert (out / entry["file"]).read_text().count("\n") == st.values.size


def test_real_layer_value_outside_declared_width_is_an_error(tmp_path):
    spec = DatapathSpec()
    x, w, b = _layer(np.random.default_rng(6))
    res = simulate_layer(x, w, b, spec, 0.5)
    acc = res.stages["acc"]
    narrow = max(2, int(np.abs(acc.values).max()).bit_length())  # one bit short of the acc's range
    stages = dict(res.stages, acc=dataclasses.replace(acc, width_bits=narrow))
    with pytest.raises(ValueError, match=rf"stage 'acc'.*does not fit {narrow}-bit signed"):
        write_vectors(SimpleNamespace(stages=stages), spec, tmp_path / "v", "toy")
    assert not (tmp_path / "v").exists()


def test_tile_parsing_and_cropping():
    assert parse_tile("16x32") == Tile(16, 32, 0, 0)
    assert parse_tile("4X4@2,3") == Tile(4, 4, 2, 3)
    for bad in ("16", "ax4", "0x4", "4x4@-1,0", "4x4@1"):
        with pytest.raises(InputError, match="tile"):
            parse_tile(bad)
    x = np.arange(2 * 3 * 6 * 7).reshape(2, 3, 6, 7)
    np.testing.assert_array_equal(crop_tile(x, Tile(2, 3, 4, 1)), x[:, :, 4:6, 1:4])
    assert crop_tile(x, None) is x
    with pytest.raises(InputError, match="inside the 6x7"):
        crop_tile(x, Tile(4, 4, 3, 0))


def test_cli_vectors_writes_a_tile(tmp_path, capsys):
    rng = np.random.default_rng(8)
    x, w, b = _layer(rng, h=20, w=24)
    write_trace(tmp_path / "t.npz", {"network": "toy"}, [LayerData("conv1", x, w, b, None)])
    hw = Path(__file__).resolve().parents[1] / "hw_configs" / "edge_npu.yaml"
    rc = main(["vectors", "--hw", str(hw), "--trace", str(tmp_path / "t.npz"), "--layer", "conv1",
               "--rate", "0.25", "--tile", "8x16@4,8", "--out", str(tmp_path / "v")])
    assert rc == 0 and "manifest.json" in capsys.readouterr().out
    man = read_manifest(tmp_path / "v")
    assert man["tile"] == {"h": 8, "w": 16, "y0": 4, "x0": 8} and man["rate"] == 0.25
    assert read_vectors(tmp_path / "v")["input_q"].shape == (1, 6, 8, 16)
    rc = main(["vectors", "--hw", str(hw), "--trace", str(tmp_path / "t.npz"), "--layer", "nope",
               "--out", str(tmp_path / "v2")])
    assert rc == 2 and "layer" in capsys.readouterr().err
    rc = main(["vectors", "--hw", str(hw), "--trace", str(tmp_path / "t.npz"), "--layer", "conv1",
               "--rate", "1.5", "--out", str(tmp_path / "v2")])
    assert rc == 2 and "rate" in capsys.readouterr().err

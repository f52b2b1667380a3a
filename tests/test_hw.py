"""hw.py: YAML loading, strict validation (one-line errors), round trip, hash, schema doc."""

from pathlib import Path

import pytest

from wccsim.errors import InputError
from wccsim.hw import (Dataflow, HwSpec, Placement, hw_from_dict, load_hw, schema_markdown,
                       schema_rows, spec_hash, spec_to_dict)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "hw_configs").glob("*.yaml"))


def test_shipped_configs_load():
    names = {p.stem for p in CONFIGS}
    assert {"edge_npu", "mcu_npu", "npu_32x32"} <= names
    edge = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")
    assert isinstance(edge, HwSpec)
    assert edge.datapath.mac.rows == 16 and edge.datapath.mac.dataflow is Dataflow.WEIGHT_STATIONARY
    assert edge.placement is Placement.COMPRESS_ON_WRITE
    assert edge.ifmap_sram.size_bytes == 262144
    mcu = load_hw(ROOT / "hw_configs" / "mcu_npu.yaml")
    assert (mcu.datapath.mac.rows, mcu.datapath.mac.cols) == (8, 8)
    assert 64 * 1024 <= mcu.ifmap_sram.size_bytes + mcu.weight_sram.size_bytes <= 256 * 1024
    big = load_hw(ROOT / "hw_configs" / "npu_32x32.yaml")
    assert (big.datapath.mac.rows, big.datapath.mac.cols) == (32, 32)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_round_trip_and_hash(path):
    hw = load_hw(path)
    again = hw_from_dict(spec_to_dict(hw))
    assert again == hw
    assert spec_hash(again) == spec_hash(hw)
    assert len(spec_hash(hw)) == 64


def test_hash_changes_with_any_field():
    hw = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")
    d = spec_to_dict(hw)
    d["mac"]["rows"] = 17
    assert spec_hash(hw_from_dict(d)) != spec_hash(hw)


def _base():
    return {"name": "t", "clock_mhz": 500, "sram": {k: {"size_bytes": 4096} for k in ("ifmap", "weight", "ofmap")}}


def test_minimal_uses_defaults():
    hw = hw_from_dict(_base())
    assert hw.datapath.quant.act_bits == 8 and hw.datapath.haar.levels == 3


BAD = [  # (yaml text, substring of the one-line error)
    ("name: t\nclock_mhz: 500\nmac: {rows: -4}\nsram: {ifmap: {size_bytes: 4096}, weight: {size_bytes: 4096},"
     " ofmap: {size_bytes: 4096}}\n", "mac.rows: expected a positive integer, got -4"),
    ("name: t\nclock_mhz: 500\nmac: {rowz: 4}\n", "mac.rowz: expected a known key: one of rows"),
    ("name: t\nclock_mhz: 500\nmac: {rowz: 4}\n", "did you mean 'rows'?"),
    ("name: t\nclok_mhz: 500\n", "did you mean 'clock_mhz'?"),
    ("name: t\nclock_mhz: fast\n", "clock_mhz: expected a number"),
    ("name: t\nclock_mhz: 500\nquant: {act_bits: 1}\n", "quant.act_bits: expected an integer in [2, 16], got 1"),
    ("name: t\nclock_mhz: 500\nquant: {weight_bits: 17}\n", "quant.weight_bits: expected an integer in [2, 16]"),
    ("name: t\nclock_mhz: 500\nquant: {act_bits: 8.5}\n", "quant.act_bits: expected an integer"),
    ("name: t\nclock_mhz: 500\nquant: {act_bits: true}\n", "quant.act_bits: expected an integer"),
    ("name: t\nclock_mhz: 500\nmac: {acc_bits: 12}\nsram: {ifmap: {size_bytes: 4096}, weight: {size_bytes: 4096},"
     " ofmap: {size_bytes: 4096}}\n", "mac.acc_bits: expected at least act_bits + weight_bits = 16, got 12"),
    ("name: t\nclock_mhz: 500\nhaar: {normalize: perlevel}\n", "did you mean 'per_level'?"),
    ("name: t\nclock_mhz: 500\nmac: {dataflow: ws}\n", "mac.dataflow: expected one of weight_stationary"),
    ("!!python/object/apply:os.system ['echo hi']\n", "expected plain YAML without language tags"),
    ("name: t\nclock_mhz: 500\nsram: {ifmap: {size_bytes: 99999999999999999999999}}\n",
     "sram.ifmap.size_bytes: expected an integer in"),
    ("name: t\nclock_mhz: .inf\n", "clock_mhz: expected a finite number"),
    ("name: t\nclock_mhz: 500\nquant: [1, 2]\n", "quant: expected a mapping"),
    ("- a\n- b\n", "(top level): expected a mapping"),
    ("name: t\nclock_mhz: 500\n", "sram: expected a mapping with ifmap, weight and ofmap"),
    ("name: t\nclock_mhz: 500\nsram: {ifmap: {size_bytes: 4096}, weight: {size_bytes: 4096}}\n",
     "sram.ofmap: expected a buffer mapping"),
    ("name: t\nsram: {ifmap: {size_bytes: 4096}, weight: {size_bytes: 4096}, ofmap: {size_bytes: 4096}}\n",
     "clock_mhz: expected a value (required key)"),
    ("name: t\nclock_mhz: 500\nmac: {rows: 16\n", "expected valid YAML"),
    ("name: t\nclock_mhz: 500\nenergy: {mac_pj: -1}\n", "energy.mac_pj: expected a finite number"),
    ("name: t\nclock_mhz: 500\nmac: {rows: }\n", "mac.rows: expected a value"),
    ("name: [a]\nclock_mhz: 500\n", "name: expected a one-line string"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_yaml_one_line_error(tmp_path, text, message):
    p = tmp_path / "edge_npu.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_hw(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: ")
    assert message in msg, msg


DUPLICATES = [  # (yaml text, key path, line of the second key, line of the first)
    ("name: t\nclock_mhz: 500\nmac:\n  rows: 16\n  cols: 16\n  rows: 4\n", "mac.rows", 6, 4),
    ("name: t\nclock_mhz: 500\nname: u\n", "name", 3, 1),
    ("name: t\nclock_mhz: 500\nsram:\n  ifmap: {size_bytes: 4096, size_bytes: 8}\n", "sram.ifmap.size_bytes", 4, 4),
    ("name: t\nclock_mhz: 500\nmac: {rows: 16}\nmac: {cols: 16}\n", "mac", 4, 3),
]


@pytest.mark.parametrize("text,key,line,first", DUPLICATES)
def test_duplicate_key_names_key_path_and_both_lines(tmp_path, text, key, line, first):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_hw(p)
    assert str(e.value) == f"{p}: {key}: expected each key once per mapping (first at line {first}), " \
                           f"got it again at line {line}"


def test_errors_name_the_path_as_given(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "bad.yaml").write_text("name: t\nclock_mhz: fast\n")
    monkeypatch.chdir(tmp_path)
    for given in ("cfg/bad.yaml", "./cfg/bad.yaml", str(tmp_path / "cfg" / "bad.yaml")):
        with pytest.raises(InputError) as e:
            load_hw(given)
        assert str(e.value).startswith(f"{given}: clock_mhz: expected a number")


def test_empty_file_directory_missing(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.yaml: expected a YAML mapping .*got an empty file"):
        load_hw(empty)
    with pytest.raises(InputError, match="expected a YAML file, got a directory"):
        load_hw(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        load_hw(tmp_path / "nope.yaml")


def test_schema_doc_is_generated_from_the_dataclasses():
    doc = (ROOT / "docs" / "hw_schema.md").read_text()
    inner = doc.split("<!-- BEGIN GENERATED TABLE -->\n", 1)[1].split("<!-- END GENERATED TABLE -->", 1)[0]
    assert inner == schema_markdown()


def test_every_dataclass_field_is_in_the_schema():
    keys = {row[0] for row in schema_rows()}
    d = spec_to_dict(load_hw(ROOT / "hw_configs" / "edge_npu.yaml"))
    d = spec_to_dict(hw_from_dict({**d, "coef": {**d["coef"], "bits": 8, "ll_bits": 8}}))  # keys left out by default
    flat = set()
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, dict):
                    flat |= {f"{k}.{k2}.{k3}" for k3 in v2}
                else:
                    flat.add(f"{k}.{k2}")
        else:
            flat.add(k)
    assert flat == keys

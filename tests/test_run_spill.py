"""`wccsim run` on the bundled trace: layers whose exact top-k selection does not fit on chip are charged
the spill and listed after the tables; with ``topk.mode: tiled`` none is (issue 17, acceptance 2)."""

from pathlib import Path

import pandas as pd
import yaml

from wccsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hw_configs" / "edge_npu.yaml"   # ofmap SRAM 128 KB holds a compress_on_write selection
BUNDLED = ROOT / "traces" / "ppocrv4_det.npz"
GLOB = "p2o_Conv_[13]6"  # 192 ch at 32x32 (196,608 coefficient bytes: spills) and 384 ch at 16x16 (fits)


def _run(hw, out, capsys):
    assert main(["run", "--hw", str(hw), "--trace", str(BUNDLED), "--layers", GLOB, "--out", str(out)]) == 0
    df = pd.read_csv(out / "layers.csv")
    return df[df.scheme == "wcc"].set_index("layer"), capsys.readouterr().out


def test_exact_topk_spills_are_charged_and_listed_tiled_are_not(tmp_path, capsys):
    exact, text = _run(HW, tmp_path / "exact", capsys)
    spill = exact.loc["p2o_Conv_16"]
    # 192 x 1024 coefficients + 1024 energies of 2 * 14 + 8 bits (deferred Haar: 8-bit input + 2 bits per
    # level) exceed 128 KB: written and read back whole
    assert spill.topk_buffer_bytes == 192 * 1024 + 1024 * 36 // 8 > 128 * 1024
    assert (spill.topk_spill, spill.topk_spill_write_bytes, spill.topk_spill_read_bytes) == (1, 196608, 196608)
    assert exact.loc["p2o_Conv_36"].topk_spill == 0
    listed = text.split("do not fit on chip")[1].split("\n\n")[0].splitlines()  # up to the verdict block
    assert [ln.split(":")[0].strip() for ln in listed[1:] if ln.startswith("  ")] == ["p2o_Conv_16"]

    cfg = yaml.safe_load(HW.read_text())
    cfg["topk"]["mode"] = "tiled"
    tiled_hw = tmp_path / "tiled.yaml"
    tiled_hw.write_text(yaml.safe_dump(cfg))
    tiled, text = _run(tiled_hw, tmp_path / "tiled", capsys)
    assert "do not fit on chip" not in text
    assert (tiled.topk_spill == 0).all() and (tiled.topk_spill_write_bytes == 0).all()
    assert (tiled.topk_buffer_bytes < exact.topk_buffer_bytes).all()
    assert (tiled.input_write_bytes == exact.input_write_bytes).all()  # the same compressed tensor

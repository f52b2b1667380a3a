"""The README is a contract: its test command is what CI runs, and it documents every output column."""

import re
from pathlib import Path

from wccsim.results import COLUMNS, TOTAL_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    nxt = README.find("\n## ", start + 1)
    return README[start:nxt if nxt > 0 else None]


def test_every_layers_csv_column_is_documented_with_a_unit():
    rows = [ln for ln in _section("Output columns").splitlines() if ln.startswith("| `")]
    documented = {}
    for ln in rows:
        names_cell, unit_cell = ln.split("|")[1:3]
        for name in re.findall(r"`([a-z_0-9]+)`", names_cell):
            documented[name] = unit_cell.strip()
    missing = [c for c in COLUMNS if c not in documented]
    assert not missing, f"README lacks columns: {missing}"
    assert all(documented[c] for c in COLUMNS)


def test_totals_columns_are_documented():
    text = _section("Output columns")
    per_layer_kinds = ("bytes", "cycles", "energy", "bops", "macs", "saturations", "overflows")
    undocumented = [c for c in TOTAL_COLUMNS if f"`{c}`" not in text
                    and not any(k in c for k in per_layer_kinds)]
    assert not undocumented, f"README lacks totals columns: {undocumented}"


def test_ci_runs_exactly_the_readme_test_command():
    setup = _section("Set-up on a fresh machine (two commands)")
    commands = [ln.strip() for ln in setup.splitlines() if ln.startswith("    ")]
    assert len(commands) == 2
    assert commands[0].endswith("wccsim run --hw hw_configs/edge_npu.yaml --trace traces/ppocrv4_det.npz")
    test_cmd = commands[1].split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [ln.strip() for ln in ci]

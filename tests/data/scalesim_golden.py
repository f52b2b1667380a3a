"""Regenerate tests/data/scalesim_golden.json: SCALE-Sim 3.0.0 ground truth for the MAC-array cycle model.

SCALE-Sim is a validation tool only (not a dependency). It needs numpy<2, so it lives in its own venv:

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install "numpy<2" scalesim==3.0.0
    python tests/data/scalesim_golden.py --scalesim-python /tmp/scalesim-venv/bin/python

For every (array, dataflow, GEMM) it writes a SCALE-Sim config and a GEMM topology (M = ofmap pixels,
N = filters, K = reduction), runs ``python -m scalesim.scale -i gemm``, and records the COMPUTE_REPORT
"Total Cycles" and the SRAM read/write counts of DETAILED_ACCESS_REPORT.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ARRAYS = ((16, 16), (8, 8), (32, 16))
DATAFLOWS = ("ws", "os", "is")
GEMMS = (  # (name, M, N, K): M ofmap pixels / kept columns, N filters (cout), K reduction (cin * kh * kw)
    ("small", 64, 32, 48),
    ("pw_24_144", 256, 144, 24),
    ("pw_144_24", 256, 24, 144),
    ("pw_320_256", 128, 256, 320),
    ("wcc_k_half", 200, 96, 16),
    ("odd", 100, 37, 19),
    ("tall_k", 50, 16, 300),
    ("one_col", 300, 1, 9),
    ("square", 128, 128, 128),
    ("tiny", 3, 5, 7),
)
_CFG = """[general]
run_name = golden

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 4096
FilterSramSzkB = 4096
OfmapSramSzkB = 4096
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {df}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


def _read_report(path: Path) -> list[dict]:
    with open(path) as f:
        rows = list(csv.reader(f))
    head = [h.strip() for h in rows[0]]
    return [{h: r[i].strip() for i, h in enumerate(head) if h} for r in rows[1:] if r]


def run(python: str, rows: int, cols: int, df: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="wccsim-scalesim-") as tmp:
        tmp = Path(tmp)
        (tmp / "scale.cfg").write_text(_CFG.format(rows=rows, cols=cols, df=df))
        (tmp / "topo.csv").write_text("Layer,M,N,K,\n" + "".join(f"{n},{m},{nn},{k},\n" for n, m, nn, k in GEMMS))
        (tmp / "layout.csv").write_text("Layer,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,"
                                        "Num Filter,Strides,\n")
        subprocess.run([python, "-m", "scalesim.scale", "-c", "scale.cfg", "-t", "topo.csv", "-l", "layout.csv",
                        "-p", "out", "-i", "gemm", "-s", "N"], cwd=tmp, check=True, capture_output=True)
        compute = _read_report(tmp / "out" / "golden" / "COMPUTE_REPORT.csv")
        access = _read_report(tmp / "out" / "golden" / "DETAILED_ACCESS_REPORT.csv")
    out = []
    for (name, m, n, k), c, a in zip(GEMMS, compute, access):
        out.append({"array": [rows, cols], "dataflow": df, "name": name, "M": m, "N": n, "K": k,
                    "total_cycles": int(c["Total Cycles"]),
                    "sram_ifmap_reads": int(float(a["SRAM IFMAP Reads"])),
                    "sram_filter_reads": int(float(a["SRAM Filter Reads"])),
                    "sram_ofmap_writes": int(float(a["SRAM OFMAP Writes"]))})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scalesim-python", required=True, help="python of the venv with scalesim==3.0.0")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    version = subprocess.run([args.scalesim_python, "-c", "import importlib.metadata as m; "
                              "print(m.version('scalesim'))"], capture_output=True, text=True, check=True)
    cases = [r for rows, cols in ARRAYS for df in DATAFLOWS for r in run(args.scalesim_python, rows, cols, df)]
    doc = {"tool": "scalesim", "version": version.stdout.strip(),
           "command": "python tests/data/scalesim_golden.py --scalesim-python /tmp/scalesim-venv/bin/python",
           "note": "total_cycles is COMPUTE_REPORT 'Total Cycles' (compute, without DRAM prefetch)",
           "cases": cases}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}: {len(cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One-off comparison: wall time of SCALE-Sim 3.0.0 vs ``wccsim.cost.layer_cost`` for the same layers.

SCALE-Sim is not a dependency (it needs numpy<2), so it runs from its own venv, as for the cost model's
golden data (tests/data/scalesim_golden.py)::

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install "numpy<2" scalesim==3.0.0
    python bench/scalesim_time.py --scalesim-python /tmp/scalesim-venv/bin/python

Each layer of the bundled trace becomes the GEMM the WCC MAC array runs at rate 0.5 (M = kept columns of
all images, N = Cout, K = Cin) on the edge_npu array (rows x cols, weight stationary). SCALE-Sim's time is
measured inside its process around ``run_scale`` (interpreter start and imports excluded), one layer per
run; ``layer_cost`` is timed best-of-20 in this process. Output: a table on stdout and
``bench/scalesim_results.json``; the number goes into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import SPEC  # noqa: E402

from wccsim.atomic import write_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RATE = 0.5
_CFG = Path(ROOT / "tests" / "data" / "scalesim_golden.py")
_RUNNER = """
import sys, time
from scalesim.scale_sim import scalesim
t0 = time.perf_counter()
s = scalesim(save_disk_space=True, verbose=False, config='scale.cfg', topology='topo.csv', layout='layout.csv',
             input_type_gemm=True)
s.run_scale(top_path='out')
print(time.perf_counter() - t0)
"""


def _config(rows: int, cols: int) -> str:
    sys.path.insert(0, str(_CFG.parent))
    from scalesim_golden import _CFG as cfg  # the cost model's validated SCALE-Sim config
    return cfg.format(rows=rows, cols=cols, df="ws")


def scalesim_seconds(python: str, cfg: str, m: int, n: int, k: int) -> float:
    """Seconds SCALE-Sim spends in ``run_scale`` for one GEMM (M ofmap columns, N filters, K reduction)."""
    with tempfile.TemporaryDirectory(prefix="wccsim-scalesim-") as tmp:
        tmp = Path(tmp)
        (tmp / "scale.cfg").write_text(cfg)
        (tmp / "topo.csv").write_text(f"Layer,M,N,K,\nL,{m},{n},{k},\n")
        (tmp / "layout.csv").write_text("Layer,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,"
                                        "Num Filter,Strides,\n")
        out = subprocess.run([python, "-c", _RUNNER], cwd=tmp, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def layer_cost_seconds(shape, hw, repeats: int = 20) -> float:
    from wccsim.cost import layer_cost
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        layer_cost(shape, hw, "wcc", RATE, SPEC.quant.act_bits, SPEC.quant.weight_bits)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scalesim-python", required=True, help="python of the venv with scalesim==3.0.0")
    ap.add_argument("--layers", type=int, default=None, help="only the first N layers")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "scalesim_results.json")
    args = ap.parse_args(argv)
    from wccsim.hw import load_hw
    from wccsim.trace import open_trace
    hw = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")
    cfg = _config(hw.datapath.mac.rows, hw.datapath.mac.cols)
    trace = open_trace(ROOT / "traces" / "ppocrv4_det.npz")
    rows = []
    for li in trace.layers[:args.layers]:
        shape = li.shape
        m = trace.n * shape.wcc_kept(RATE, SPEC.haar.levels)
        ss = scalesim_seconds(args.scalesim_python, cfg, m, li.cout, li.cin)
        ours = layer_cost_seconds(shape, hw)
        rows.append({"layer": li.name, "M": m, "N": li.cout, "K": li.cin, "scalesim_s": ss, "layer_cost_s": ours,
                     "ratio": ss / ours})
        print(f"{li.name:14s} M={m:6d} N={li.cout:4d} K={li.cin:4d}  SCALE-Sim {ss:8.3f} s  "
              f"layer_cost {ours * 1e3:7.3f} ms  {ss / ours:9.0f}x", flush=True)
    tot_ss, tot_ours = sum(r["scalesim_s"] for r in rows), sum(r["layer_cost_s"] for r in rows)
    print(f"total: SCALE-Sim {tot_ss:.1f} s, layer_cost {tot_ours * 1e3:.2f} ms ({tot_ss / tot_ours:.0f}x)")
    doc = {"tool": "scalesim 3.0.0 (gemm mode, ws, edge_npu array)", "rate": RATE, "layers": rows,
           "total_scalesim_s": tot_ss, "total_layer_cost_s": tot_ours,
           "command": "python bench/scalesim_time.py --scalesim-python /tmp/scalesim-venv/bin/python"}
    write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Print the paper's BOPs tables next to ours (markdown), from the workload CSVs in this folder.

Run from the repository root: ``python workloads/bops_tables.py``. docs/validation.md shows its output;
tests/test_cost_bops.py asserts the same numbers. Beside the rule (wccsim.cost.bops) each table shows the
alternative docs/cost.md rejects: a shrinkage term w x a x rate x (Cin + Cout) x H x W per 1x1 layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wccsim.cost.bops import paper_bops, paper_fp32_bops  # noqa: E402
from wccsim.cost.workload import load_workload, rescale_workload  # noqa: E402

HERE = Path(__file__).resolve().parent
# (row label, weight bits, act bits, WCC rate or None for quantization only; (0, 0, None) = FP32) -> published
# Cityscapes: /work/shared/paper/official_results.md (the official code's README = the paper's Figure 4);
# VOC, Monodepth2: the paper's Tables 2 and 3.
CITYSCAPES = {("FP32", 0, 0, None): 36377, ("8/8", 8, 8, None): 2273, ("8/6", 8, 6, None): 1705,
              ("8/4", 8, 4, None): 1136, ("8/8 WCC 50%", 8, 8, 0.5): 1213, ("8/8 WCC 25%", 8, 8, 0.25): 673,
              ("8/8 WCC 12.5%", 8, 8, 0.125): 403}
VOC = {("FP32", 0, 0, None): 4534, ("4/8", 4, 8, None): 141, ("4/4", 4, 4, None): 70,
       ("4/8 WCC 50%", 4, 8, 0.5): 76, ("4/8 WCC 25%", 4, 8, 0.25): 42, ("4/8 WCC 12.5%", 4, 8, 0.125): 24}
MONODEPTH2 = {("FP32", 0, 0, None): 1163.6, ("8/8", 8, 8, None): 133.6, ("8/4", 8, 4, None): 99.26,
              ("8/2", 8, 2, None): 82.1, ("8/8 WCC 50%", 8, 8, 0.5): 103.9,
              ("8/8 WCC 25%", 8, 8, 0.25): 88.5, ("8/8 WCC 12.5%", 8, 8, 0.125): 80.8}
TABLES = (("Cityscapes 1024x2048 (Figure 4), VainF geometry", "deeplabv3plus_mnv2_cityscapes_vainf.csv", None,
           CITYSCAPES),
          ("Cityscapes 1024x2048, \"same\" padding", "deeplabv3plus_mnv2_cityscapes.csv", None, CITYSCAPES),
          ("Pascal VOC 513x513 (Table 2), VainF geometry", "deeplabv3plus_mnv2_voc_vainf.csv", None, VOC),
          ("Pascal VOC 513x513, \"same\" padding", "deeplabv3plus_mnv2_voc.csv", None, VOC),
          ("Pascal VOC at 512x512, \"same\" padding", "deeplabv3plus_mnv2_voc.csv", (512, 512), VOC),
          ("Monodepth2 KITTI 192x640 (Table 3)", "monodepth2_mnv2_kitti.csv", None, MONODEPTH2))


def network_bops(wl, w_bits: int, a_bits: int, rate: float | None) -> float:
    """Whole-network BOPs in units of 1e9 under the paper's rule (wccsim.cost.bops)."""
    if w_bits == 0:
        return sum(paper_fp32_bops(s, wl.fp_layers) for s in wl.layers) / 1e9
    return sum(paper_bops(s, rate is not None, rate or 1.0, a_bits, w_bits, wl.fp_layers)
               for s in wl.layers) / 1e9


def shrinkage_term(wl, w_bits: int, a_bits: int, rate: float | None) -> float:
    """The rejected shrinkage term, units of 1e9: w x a x rate x (Cin + Cout) x ho x wo per WCC layer."""
    if rate is None:
        return 0.0
    return sum(w_bits * a_bits * rate * (s.cin + s.cout) * s.ho * s.wo
               for s in wl.layers if s.is_pointwise and not s.keep_fp) / 1e9


def table(filename: str, input_hw, rows: dict) -> list[tuple]:
    """(label, published, ours, error %, ours with the shrinkage term) for each row."""
    wl = load_workload(HERE / filename)
    if input_hw:
        wl = rescale_workload(wl, input_hw)
    out = []
    for (label, w, a, rate), pub in rows.items():
        ours = network_bops(wl, w, a, rate)
        out.append((label, pub, ours, 100 * (ours - pub) / pub, ours + shrinkage_term(wl, w, a, rate)))
    return out


def main() -> int:
    for title, filename, input_hw, rows in TABLES:
        print(f"\n#### {title}\n")
        print("| row | published (B) | ours (B) | error | with shrinkage term (B) | error |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, pub, ours, err, shrunk in table(filename, input_hw, rows):
            print(f"| {label} | {pub:,} | {ours:,.2f} | {err:+.2f} % | {shrunk:,.2f} | "
                  f"{100 * (shrunk - pub) / pub:+.2f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

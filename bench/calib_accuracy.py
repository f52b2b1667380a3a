"""Histogram MSE calibration vs the exhaustive search on every full tensor a `wccsim run` calibrates
(issue 18, acceptance 5; docs/quantization.md, "Calibration").

Usage::

    python bench/calib_accuracy.py [--trace traces/ppocrv4_det.npz] [--hw hw_configs/edge_npu.yaml]

Runs `simulate_layer` on every layer (rate 0.5) with a `CalibSample` that also keeps the values it is fed
(inputs, outputs, coefficient groups), then for each tensor at the widths the run asked and at 4 and 8 bits
compares the squared error of the histogram clip with the smallest one of the exhaustive search (every
candidate ``max * i / 128`` on every value, float64, plain numpy). Slow (minutes): 128 passes per tensor.
Prints one line per (tensor, bits) and the worst ratio (acceptance: <= 1.01).
"""

from __future__ import annotations

import argparse

import numpy as np

import wccsim.calibrate as cal
import wccsim.simulate.params as prm
import wccsim.simulate.wcc as wccmod
from wccsim.hw import CalibMethod, load_hw
from wccsim.simulate import simulate_layer
from wccsim.trace import open_trace


class _Recording(cal.CalibSample):
    """CalibSample that keeps the values it is fed and the (bits, signed) it is asked."""
    made: list = []

    def __init__(self, method, _records=None):
        super().__init__(method, _records)
        self.blocks, self.asked = [], set()
        _Recording.made.append(self)

    def add(self, block):
        self.blocks.append(np.array(block, dtype=np.float64).ravel())
        return super().add(block)

    @staticmethod
    def add_columns(samples, q, scale, group):
        real = q * np.asarray(scale)
        for g, s in enumerate(samples):
            s.blocks.append(np.array(real[..., np.asarray(group) == g], dtype=np.float64).ravel())
        cal.CalibSample.add_columns(samples, q, scale, group)

    def clip(self, bits, signed, percentile=99.99):
        self.asked.add((bits, signed))
        return super().clip(bits, signed, percentile)


def sse(m: np.ndarray, alpha: float, qmax: int) -> float:
    s = alpha / qmax
    return float(np.sum((np.minimum(np.rint(m / s), qmax) * s - m) ** 2))


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/calib_accuracy.py", description=__doc__.splitlines()[0])
    p.add_argument("--trace", default="traces/ppocrv4_det.npz")
    p.add_argument("--hw", default="hw_configs/edge_npu.yaml")
    args = p.parse_args()
    prm.CalibSample = wccmod.CalibSample = _Recording
    spec = load_hw(args.hw).datapath
    trace = open_trace(args.trace)
    worst, n = 0.0, 0
    for info in trace.layers:
        d = trace.layer(info.name)
        _Recording.made.clear()
        simulate_layer(d.x, d.w, d.b, spec, 0.5, stride=d.stride, keep=False)
        for r in _Recording.made:
            x = np.concatenate(r.blocks)
            for bits, signed in sorted(r.asked | {(b, s) for _, s in r.asked for b in (4, 8)}):
                m = np.abs(x) if signed else np.maximum(x, 0.0)
                if m.max() == 0:
                    continue
                qmax = cal.levels(bits, signed)[1]
                best = min(sse(m, m.max() * i / 128, qmax) for i in range(1, 129))
                ratio = sse(m, cal.CalibSample(CalibMethod.MSE).add(x).clip(bits, signed), qmax) / best
                worst, n = max(worst, ratio), n + 1
                print(f"{info.name} size={x.size} bits={bits} signed={signed} ratio={ratio:.6f}", flush=True)
    print(f"checked {n} (tensor, bits) pairs, worst mse_hist / mse_exhaustive = {worst:.6f}")
    return 0 if worst <= 1.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())

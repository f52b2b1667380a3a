"""Peak memory of iterating a trace: lazy loading needs about one layer, not the file.

Writes a synthetic trace of `--layers` layers of about `--layer-mb` MB each (float32 x and y) to a
temporary directory, then, in a fresh process, opens it and iterates all layers, reporting the peak
resident set size (VmHWM) above the baseline after imports, next to the largest single layer's arrays
and the file size. Also measures the bundled traces given with --trace.

    python bench/trace_memory.py --layers 12 --layer-mb 80 --trace traces/ppocrv4_det.npz
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, sys
import numpy as np
from wccsim.trace import open_trace

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

base = status("VmRSS")
t = open_trace(sys.argv[1])
largest = 0
for ld in t:
    largest = max(largest, sum(a.nbytes for a in (ld.x, ld.w, ld.b, ld.y) if a is not None))
    del ld
print(json.dumps({"peak_above_baseline_bytes": status("VmHWM") - base, "largest_layer_bytes": largest,
                  "layers": len(t.layers)}))
"""


def _synthetic(path: Path, layers: int, layer_mb: float) -> None:
    from wccsim.trace import LayerData, write_trace

    c, hw = 64, int(np.sqrt(layer_mb * 1e6 / (2 * 64 * 4)))  # x and y: 64 channels, float32

    def gen():
        rng = np.random.default_rng(0)
        for i in range(layers):
            x = rng.standard_normal((1, c, hw, hw), dtype=np.float32)
            w = rng.standard_normal((c, c), dtype=np.float32)
            yield LayerData(f"l{i}", x, w, None, np.einsum("oc,nchw->nohw", w, x), 1)
    write_trace(path, {"network": "synthetic"}, gen())


def measure(path: Path) -> dict:
    """Run the iteration in a fresh interpreter and return its memory figures (bytes)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    res["file_bytes"] = path.stat().st_size
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--layer-mb", type=float, default=80.0)
    ap.add_argument("--trace", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "synthetic.npz"
        _synthetic(p, args.layers, args.layer_mb)
        rows = [("synthetic", measure(p))] + [(t, measure(Path(t))) for t in args.trace]
    for name, r in rows:
        mb = {k: r[k] / 1e6 for k in ("file_bytes", "largest_layer_bytes", "peak_above_baseline_bytes")}
        print(f"{name}: {r['layers']} layers, file {mb['file_bytes']:.0f} MB, largest layer "
              f"{mb['largest_layer_bytes']:.0f} MB, peak RSS above baseline {mb['peak_above_baseline_bytes']:.0f} MB "
              f"({r['peak_above_baseline_bytes'] / r['largest_layer_bytes']:.2f}x the largest layer)")


if __name__ == "__main__":
    main()

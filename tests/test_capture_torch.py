"""PyTorch capture mechanics on a small model built here (random weights: tests hooks, not a network)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wccsim.capture import torchscript  # noqa: E402
from wccsim.capture.images import PRESETS, load_image, preprocess_images  # noqa: E402
from wccsim.capture.onnx import sha256_file  # noqa: E402
from wccsim.capture.torch import capture_torch, capture_torch_trace  # noqa: E402
from wccsim.reference import ref_conv  # noqa: E402
from wccsim.trace import open_trace  # noqa: E402


class _MechanicsOnlyNet(torch.nn.Module):
    """3x3 stem, 1x1 stride 2 with bias, depthwise 3x3, a bias-free 1x1 called twice, pool, 1x1 'FC'."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pw = torch.nn.Conv2d(8, 12, 1, stride=2)
        self.dw = torch.nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.shared = torch.nn.Conv2d(12, 12, 1, bias=False)
        self.fc = torch.nn.Conv2d(12, 5, 1)

    def forward(self, x):
        x = torch.relu(self.pw(torch.relu(self.stem(x))))
        x = self.shared(torch.relu(self.shared(self.dw(x))))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1))


@pytest.fixture
def net_and_batch():
    torch.manual_seed(0)
    return _MechanicsOnlyNet().eval(), np.random.default_rng(0).standard_normal((2, 3, 9, 10)).astype(np.float32)


@pytest.mark.parametrize("store", ["float32", "float16"])
def test_hooks_capture_1x1_layers(net_and_batch, store):
    net, x = net_and_batch
    meta, layers = capture_torch(net, x, network="mechanics-only", store_dtype=store)
    assert [(ld.name, ld.stride, ld.x.shape, ld.b is None) for ld in layers] == [
        ("pw", 2, (2, 8, 9, 10), False), ("shared", 1, (2, 12, 5, 5), True), ("shared_2", 1, (2, 12, 5, 5), True)]
    assert np.array_equal(layers[0].w, net.pw.weight.detach().numpy()[:, :, 0, 0])
    assert {s["node"]: s["reason"] for s in meta["skipped"]} == {
        "stem": "kernel 3x3", "dw": "kernel 3x3, group 12", "fc": "1x1 pixel input (fully connected layer)"}
    assert meta["model_conv_macs"] == 8 * 27 * 90 + 12 * 8 * 25 + 12 * 9 * 25 + 2 * 144 * 25 + 5 * 12
    for ld in layers:
        if store == "float16":
            assert np.array_equal(ld.x, ld.x.astype(np.float16).astype(np.float32))
        err = np.linalg.norm(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride) - ld.y) / np.linalg.norm(ld.y)
        assert err <= 1e-4


def test_trace_written_and_reopened(net_and_batch, tmp_path):
    net, x = net_and_batch
    infos = capture_torch_trace(net, x, tmp_path / "t.npz", network="mechanics-only",
                                input_meta={"images": ["random"]}, store_dtype="float16")
    t = open_trace(tmp_path / "t.npz")
    assert t.layers == infos and t.n == 2 and t.meta["input"]["size_hw_px"] == [9, 10]
    assert t.meta["source"]["tool"].startswith("torch ") and len(t.meta["source"]["sha256"]) == 64
    assert np.array_equal(t.layer("pw").w, net.pw.weight.detach().numpy()[:, :, 0, 0])


# ------------------------------------------------------------------- the CLI: --torch and --torchscript

ROOT = Path(__file__).resolve().parents[1]
_FACTORY_MODULE = '''
import torch


class Tiny(torch.nn.Module):
    """3x3 stem, BatchNorm, two 1x1 convs (one strided), a 1x1 'classifier' on the map."""

    def __init__(self, num_classes):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pw = torch.nn.Conv2d(8, 16, 1, stride=2)
        self.head = torch.nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        return self.head(torch.relu(self.pw(torch.relu(self.bn(self.stem(x))))))


def build(num_classes=4, weights="would-download"):
    assert weights is None, "the CLI passes weights=None"
    return Tiny(num_classes)
'''


def _cli(*args, pythonpath=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "wccsim", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env)


@pytest.fixture
def factory(tmp_path):
    """A factory module on a temporary path and a state dict of 3-class random weights saved from it."""
    (tmp_path / "wcc_tiny_factory.py").write_text(_FACTORY_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import wcc_tiny_factory
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(1)
    net = wcc_tiny_factory.build(num_classes=3, weights=None)
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    sys.modules.pop("wcc_tiny_factory")
    return tmp_path, net.eval()


def test_cli_torch_factory_capture_then_run(factory):
    tmp, net = factory
    out = tmp / "tiny.npz"
    r = _cli("trace", "capture", "--torch", "wcc_tiny_factory:build", "--weights", str(tmp / "w.pth"),
             "--factory-arg", "num_classes=3", "--image", "skimage:astronaut", "--image", "skimage:coffee",
             "--size", "40x48", "-o", str(out), pythonpath=str(tmp))
    assert r.returncode == 0, r.stderr
    t = open_trace(out)
    assert [li.name for li in t.layers] == ["pw", "head"] and t.n == 2
    assert t.meta["input"] == {"images": ["skimage:astronaut", "skimage:coffee"], "preprocess": "imagenet",
                               "size_hw_px": [40, 48]}
    assert t.meta["source"]["sha256"] == sha256_file(tmp / "w.pth") and t.meta["source"]["model_file"] == "w.pth"
    assert t.meta["source"]["factory_args"] == {"num_classes": 3}
    want = preprocess_images([load_image("skimage:astronaut"), load_image("skimage:coffee")], PRESETS["imagenet"],
                             (40, 48))
    with torch.no_grad():
        stem = torch.relu(net.bn(net.stem(torch.from_numpy(want))))
    assert np.allclose(t.layer("pw").x, stem.numpy(), rtol=1e-6, atol=1e-6)
    for ld in t:
        assert np.array_equal(ld.w, getattr(net, ld.name).weight.detach().numpy()[:, :, 0, 0])
        assert np.linalg.norm(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride) - ld.y) <= 1e-4 * np.linalg.norm(ld.y)
    run = _cli("run", "--hw", "hw_configs/edge_npu.yaml", "--trace", str(out), "--out", str(tmp / "run"))
    assert run.returncode == 0, run.stderr
    assert "network totals (2 layers)" in run.stdout


@pytest.mark.parametrize("args, words", [
    (["--torch", "wcc_tiny_factory", "--weights", "W"], ["MODULE:FACTORY"]),
    (["--torch", "no_such_module_here:build", "--weights", "W"],
     ["no_such_module_here:build: MODULE", "ModuleNotFound"]),
    (["--torch", "wcc_tiny_factory:nope", "--weights", "W"], ["FACTORY", "a callable"]),
    (["--torch", "wcc_tiny_factory:build", "--weights", "W"], ["state dict", "2 of other shape", "head.weight"]),
    (["--torch", "wcc_tiny_factory:build", "--weights", "W", "--factory-arg", "num_classes=3", "--factory-arg",
      "bogus=1"], ["FACTORY", "unexpected keyword argument 'bogus'"]),
    (["--torch", "wcc_tiny_factory:build", "--weights", "MISSING"], ["MISSING", "no such file"]),
    (["--torch", "wcc_tiny_factory:build", "--weights", "GARBAGE"], ["GARBAGE", "weights_only=True"]),
    (["--torch", "wcc_tiny_factory:build"], ["--weights missing"]),
    (["--torchscript", "W", "--weights", "W"], ["with --torchscript"]),
    (["--torchscript", "GARBAGE"], ["GARBAGE", "TorchScript"]),
])
def test_cli_torch_bad_inputs_exit_2_in_one_line(factory, args, words):
    tmp, _ = factory
    (tmp / "garbage.bin").write_bytes(b"not a torch file")
    paths = {"W": str(tmp / "w.pth"), "MISSING": str(tmp / "missing.pth"), "GARBAGE": str(tmp / "garbage.bin")}
    r = _cli("trace", "capture", *[paths.get(a, a) for a in args], "--image", "skimage:coffee", "--size", "32x32",
             "-o", str(tmp / "bad.npz"), pythonpath=str(tmp))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert paths.get(w, w) in r.stderr, r.stderr
    assert not (tmp / "bad.npz").exists()


def _jit(script, net, x=None):
    """``torch.jit.script`` or ``torch.jit.trace`` of `net` (deprecated from torch 2.14 on, still supported)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|trace|trace_method)` is deprecated")
        return torch.jit.script(net) if script else torch.jit.trace(net, x)


@pytest.mark.parametrize("script", [True, False], ids=["scripted", "traced"])
def test_cli_torchscript_capture(factory, script):
    """A TorchScript file (scripted or traced): captured through the checked ONNX export; BatchNorm is folded
    into the stem, the 1x1 layers keep the module's own weights."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    tmp, net = factory
    x = torch.zeros(1, 3, 32, 32)
    _jit(script, net, x).save(str(tmp / "tiny.pt"))
    out = tmp / "ts.npz"
    r = _cli("trace", "capture", "--torchscript", str(tmp / "tiny.pt"), "--image", "skimage:chelsea", "--size",
             "32x40", "--preprocess", "unit", "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = open_trace(out)
    assert [(li.cin, li.cout, li.stride) for li in t.layers] == [(8, 16, 2), (16, 3, 1)]
    assert t.meta["source"]["model_file"] == "tiny.pt" and t.meta["source"]["sha256"] == sha256_file(tmp / "tiny.pt")
    assert t.meta["input"]["preprocess"] == "unit"
    for ld, mod in zip(t, (net.pw, net.head)):
        assert np.array_equal(ld.w, mod.weight.detach().numpy()[:, :, 0, 0])
        assert np.array_equal(ld.b, mod.bias.detach().numpy())
        assert np.linalg.norm(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride) - ld.y) <= 1e-4 * np.linalg.norm(ld.y)


def test_torchscript_export_check_refuses_a_different_output(factory, monkeypatch):
    """If the exported graph did not reproduce TorchScript's output, the capture stops (no trace written)."""
    pytest.importorskip("onnxruntime")
    tmp, net = factory
    _jit(True, net).save(str(tmp / "tiny.pt"))
    monkeypatch.setattr(torchscript, "run_onnx", lambda path, batch: [np.zeros((1, 3, 8, 8), np.float32)])
    with pytest.raises(RuntimeError, match="differs from TorchScript"):
        torchscript.capture_torchscript_trace(tmp / "tiny.pt", ["skimage:coffee"], tmp / "x.npz", size=(16, 16))
    assert not (tmp / "x.npz").exists()


def _torchvision_segmentation():
    try:
        import torchvision.models.segmentation as seg
    except Exception as e:  # PyPI's torchvision beside a CPU torch raises RuntimeError on import
        pytest.skip(f"torchvision not importable ({type(e).__name__}: {e}); pip install torchvision "
                    f"matching torch {torch.__version__}")
    return seg


def test_cli_deeplab_user_weights_capture_and_run(tmp_path):
    """The user's path: torchvision's DeepLabV3-MobileNetV3 with their own state dict (random here, saved by
    the test), captured from the CLI as the README shows, then simulated with `wccsim run`."""
    seg = _torchvision_segmentation()
    torch.manual_seed(0)
    net = seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()
    torch.save(net.state_dict(), tmp_path / "W.pth")
    out = tmp_path / "deeplab.npz"
    r = _cli("trace", "capture", "--torch", "torchvision.models.segmentation:deeplabv3_mobilenet_v3_large",
             "--weights", str(tmp_path / "W.pth"), "--factory-arg", "num_classes=5", "--image", "skimage:astronaut",
             "--size", "96x96", "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = open_trace(out)
    convs = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert t.meta["network"] == "deeplabv3_mobilenet_v3_large" and len(t.layers) >= 20
    assert "classifier_4" in {li.name for li in t.layers}  # the 1x1 that outputs the 5 class logits
    for name in (t.layers[0].name, "classifier_4"):
        ld = t.layer(name)
        assert np.array_equal(ld.w, convs[name.replace("_", ".")].weight.detach().numpy()[:, :, 0, 0])
        assert np.linalg.norm(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride) - ld.y) <= 1e-4 * np.linalg.norm(ld.y)
    run = _cli("run", "--hw", "hw_configs/edge_npu.yaml", "--trace", str(out), "--layers", "classifier_4",
               "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    assert "classifier_4" in run.stdout and "network totals (1 layers)" in run.stdout
    bad = _cli("trace", "capture", "--torch", "torchvision.models.segmentation:deeplabv3_mobilenet_v3_large",
               "--weights", str(tmp_path / "W.pth"), "--image", "skimage:astronaut", "--size", "64x64",
               "-o", str(tmp_path / "d21.npz"))
    assert bad.returncode == 2 and "classifier.4.weight" in bad.stderr  # 21 classes by default, 5 in W.pth


def test_a_1x1_conv_with_same_or_valid_padding_is_captured_and_numeric_padding_is_not():
    torch = pytest.importorskip("torch", reason="torch extra not installed")
    from wccsim.capture.torch import _skip_reason

    x = torch.zeros(1, 3, 5, 7)
    for padding in ("same", "valid", 0, (0, 0)):
        assert _skip_reason(torch.nn.Conv2d(3, 4, 1, padding=padding), x) is None, padding
    assert _skip_reason(torch.nn.Conv2d(3, 4, 1, padding=1), x) == "pads [1, 1]"

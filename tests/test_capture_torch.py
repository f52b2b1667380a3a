"""PyTorch capture mechanics on a small model built here (random weights: tests hooks, not a network)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

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

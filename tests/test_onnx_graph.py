"""The one rule for which ONNX Conv nodes the WCC datapath computes (capture and network share it)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx extra not installed")
from onnx import helper, numpy_helper  # noqa: E402

from wccsim.capture.onnx_graph import NotPointwise, PointwiseConv, fold_constants, pointwise_conv  # noqa: E402

W = np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1)
CONSTS = {"w": W, "w3": np.zeros((4, 3, 3, 3), np.float32), "w1d": np.zeros((4, 3, 1), np.float32),
          "b": np.ones(4, np.float32)}


def conv(inputs=("x", "w"), op="Conv", **attrs):
    return helper.make_node(op, list(inputs), ["y"], name="n", **attrs)


def test_a_plain_pointwise_conv_is_taken_with_its_weights_bias_and_stride():
    got = pointwise_conv(conv(("x", "w", "b"), strides=[2, 2]), CONSTS)
    assert isinstance(got, PointwiseConv) and (got.name, got.x, got.y, got.stride) == ("n", "x", "y", 2)
    assert got.w.shape == (4, 3) and np.array_equal(got.w, W[:, :, 0, 0]) and np.array_equal(got.b, CONSTS["b"])
    assert pointwise_conv(conv(auto_pad="VALID"), CONSTS).b is None


@pytest.mark.parametrize("auto_pad", ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("stride, h, w", [(1, 5, 7), (2, 5, 7), (2, 6, 4), (3, 7, 5)])
def test_every_auto_pad_of_a_1x1_conv_is_the_subsampled_product(auto_pad, stride, h, w):
    """With a 1x1 kernel no auto_pad mode pads: onnxruntime's output is the strided input's product, so the
    node is a PointwiseConv whatever its auto_pad."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    from wccsim.reference import ref_conv

    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[1, 1], strides=[stride, stride],
                            auto_pad=auto_pad)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(CONSTS["b"], "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = np.random.default_rng(stride * h * w).standard_normal((1, 3, h, w)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    conv = pointwise_conv(node, {"w": W, "b": CONSTS["b"]})
    assert isinstance(conv, PointwiseConv) and conv.stride == stride
    np.testing.assert_allclose(y, ref_conv(x, conv.w, conv.b, stride=stride), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("node, reason, kernel_1x1", [
    (conv(op="ConvTranspose"), "ConvTranspose", False),
    (conv(("x", "w3"), group=2), "kernel 3x3, group 2", False),
    (conv(("x", "dyn")), "weights computed at run time", False),
    (conv(("x", "dyn"), kernel_shape=[1, 1]), "weights computed at run time", True),
    (conv(("x", "w1d")), "1-D convolution", True),
    (conv(group=2), "group 2", True),
    (conv(pads=[0, 1, 0, 1]), "pads [0, 1, 0, 1]", True),
    (conv(strides=[1, 2]), "unequal strides [1, 2]", True),
    (conv(("x", "w", "dyn_b")), "bias computed at run time", True),
    (conv(group=2, strides=[1, 2]), "group 2, unequal strides [1, 2]", True),
])
def test_every_other_conv_says_why_and_whether_its_kernel_is_1x1(node, reason, kernel_1x1):
    assert pointwise_conv(node, CONSTS) == NotPointwise(reason, kernel_1x1)


def test_constants_fold_initializers_and_every_constant_node_form():
    nodes = [helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(W, "t")),
             helper.make_node("Constant", [], ["f"], value_floats=[1.5, 2.0]),
             helper.make_node("Constant", [], ["i"], value_int=3),
             helper.make_node("Relu", ["x"], ["r"])]
    graph = helper.make_graph(nodes, "g", [], [], [numpy_helper.from_array(CONSTS["b"], "b")])
    consts, rest = fold_constants(graph)
    assert sorted(consts) == ["b", "f", "i", "t"] and [n.op_type for n in rest] == ["Relu"]
    assert np.array_equal(consts["t"], W) and consts["f"].dtype == np.float32 and int(consts["i"]) == 3

"""Generate the shape-only workload CSVs in this folder from the published architecture definitions.

Run from the repository root: ``python workloads/make_workloads.py``. The files are committed; a test
checks they equal what this script produces.

DeepLabV3+ with a MobileNetV2 backbone, as in the paper's public code (it transforms the model of
github.com/VainF/DeepLabV3Plus-Pytorch, ``deeplabv3plus_mobilenet`` with ``--separable_conv``):
- backbone: torchvision MobileNetV2 (Sandler et al. 2018, Table 2: t, c, n, s settings below), output stride
  16: once the running stride reaches 16, later stages use stride 1 (and dilation). ``low_level_features``
  = features[0:4] (24 channels at stride 4), ``high_level_features`` = features[4:-1] (the final 320->1280
  1x1 conv is dropped);
- head (DeepLabHeadV3Plus): project 1x1 24->48 at stride 4; ASPP on 320 channels at stride 16: 1x1 320->256,
  three atrous 3x3 (rates 6, 12, 18) made separable (depthwise 3x3 320 + 1x1 320->256), image pooling
  (global average, 1x1 320->256 on a 1x1 map), projection 1x1 1280->256; decoder at stride 4: separable
  3x3 on 304 = 256 + 48 channels (depthwise 3x3 304 + 1x1 304->256), classifier 1x1 256->classes.
- kept in full precision by the paper's transform: backbone.low_level_features[0][0] (the first conv) and
  classifier.classifier[3] (the last 1x1).
- geometry: ``*_vainf.csv`` (``# geometry: vainf_fixed_padding``) follows VainF's ``mobilenetv2.py``: its
  convs use padding 0; each inverted residual block pads its input by the depthwise conv's dilation d on
  every side (``F.pad`` with ``fixed_padding(3, d)``), so the expand 1x1 runs on (H + 2d) x (W + 2d), and
  the first 3x3 stride-2 conv is unpadded ((H - 3) // 2 + 1; 1024 -> 511, 513 -> 256). The depthwise conv's
  output and MACs are those of "same" padding. The other files use "same" padding throughout.
- edges (``inputs``, ``residual``): an inverted residual block with stride 1 and equal channels adds its
  input to its project output (torchvision ``use_res_connect``; the add is fused into the project layer);
  ASPP's five branches read the backbone output (the pooling branch through a global average pool) and are
  concatenated into its projection; the decoder concatenates the upsampled ASPP output with the projected
  low-level features (``head.project`` reads features[3], the last block at stride 4).

Monodepth2 (Godard et al. 2019) with the MobileNetV2 encoder and a depthwise-separable depth decoder, as
the paper describes (sec. 5.4):
- encoder: torchvision MobileNetV2 ``features`` (output stride 32, all 17 inverted residual blocks and the
  final 1x1 320->1280 conv, as monodepth2's ResNet encoder uses every stage); skip features at strides 2,
  4, 8, 16, 32 with 16, 24, 32, 96, 1280 channels. (With this encoder the 1x1 MACs behind the paper's WCC
  rows match to 0.05%; without the final conv they are 8% short: docs/validation.md.)
- decoder (monodepth2 ``DepthDecoder``, num_ch_dec = 16, 32, 64, 128, 256): for i = 4..0,
  upconv(i, 0) 3x3 -> upsample x2 -> concat skip i-1 -> upconv(i, 1) 3x3, each 3x3 made depthwise
  separable (depthwise 3x3 + 1x1); dispconv 3x3 -> 1 channel at scales 0..3, kept as plain convs;
- kept in full precision: the first conv and the final convolutions (dispconvs); the paper counts them at
  32 x 32 bits (``paper_fp_layers: fp32``). Input 192 x 640 (monodepth2's KITTI default).
- edges: the encoder's residual adds as in DeepLab; upconv(i, 1) reads the upsampled upconv(i, 0) output
  concatenated with the encoder skip; dispconv s reads upconv(s, 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wccsim.atomic import write_text  # noqa: E402
from wccsim.cost.workload import (  # noqa: E402
    NETWORK_INPUT, SAME, VAINF, Edges, FpLayers, LayerKind, LayerShape, Workload, workload_to_csv,
)

HERE = Path(__file__).resolve().parent
# MobileNetV2 inverted residual settings (t expansion, c channels, n repeats, s stride), Sandler et al. 2018.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Net:
    """Collects LayerShapes and their Edges; `at(stride)` gives the spatial size at a total downsampling
    factor (the size recorded in `sizes` by the backbone, else "same" padding's). A layer reads the one
    before unless `inputs` names its producers."""

    def __init__(self, hw, geometry=SAME):
        self.hw, self.geometry, self.layers, self.edges, self.sizes = hw, geometry, [], [], {}

    def at(self, stride):
        return self.sizes.get(stride, (_ceil_div(self.hw[0], stride), _ceil_div(self.hw[1], stride)))

    @property
    def last(self):
        return self.layers[-1].name if self.layers else NETWORK_INPUT

    def conv(self, name, kind, cin, cout, k, stride, in_stride, groups=1, dilation=1, keep_fp=False,
             inputs=None, residual=None, pad=0):
        h, w = (x + 2 * pad for x in self.at(in_stride))
        self.edges.append(Edges(tuple(inputs or (self.last,)), residual))
        self.layers.append(LayerShape(name, kind, cin, cout, k, stride, groups, h, w, dilation, keep_fp))

    def pw(self, name, cin, cout, in_stride, keep_fp=False, inputs=None, residual=None, pad=0):
        self.conv(name, LayerKind.CONV1X1, cin, cout, 1, 1, in_stride, keep_fp=keep_fp, inputs=inputs,
                  residual=residual, pad=pad)

    def dw(self, name, ch, stride, in_stride, dilation=1, inputs=None):
        self.conv(name, LayerKind.DWCONV, ch, ch, 3, stride, in_stride, groups=ch, dilation=dilation,
                  inputs=inputs)

    def separable(self, name, cin, cout, in_stride, dilation=1, inputs=None):
        self.dw(f"{name}.dw", cin, 1, in_stride, dilation, inputs=inputs)
        self.pw(f"{name}.pw", cin, cout, in_stride)

    def workload(self, network, fp_layers):
        return Workload(network, self.hw, fp_layers, tuple(self.layers), tuple(self.edges), self.geometry)


def _mobilenetv2(net: _Net, output_stride: int, final_conv: bool = False):
    """Append MobileNetV2 features[0:-1] (with `final_conv`, also features[18], the 1x1 320->1280);
    return {stride: (channels, layer name)} of the last layer at each stride. Sizes per `net.geometry`."""
    net.conv("features.0", LayerKind.CONV, 3, 32, 3, 2, 1, keep_fp=True)
    vainf = net.geometry == VAINF
    if vainf:  # ConvBNReLU with padding 0
        net.sizes[2] = tuple((x - 3) // 2 + 1 for x in net.hw)
    cin, stride, dilation, idx, taps = 32, 2, 1, 1, {}
    for t, c, n, s in MOBILENETV2_SETTINGS:
        prev_dilation = dilation
        if stride == output_stride:
            first_stride, dilation = 1, dilation * s
        else:
            first_stride = s
        for i in range(n):
            st, dil = (first_stride, prev_dilation) if i == 0 else (1, dilation)
            hidden = cin * t
            name, block_input = f"features.{idx}", net.last
            if t != 1:
                net.pw(f"{name}.expand", cin, hidden, stride, pad=dil if vainf else 0)
            net.dw(f"{name}.dw", hidden, st, stride, dil)
            net.sizes[stride * st] = tuple(_ceil_div(x, st) for x in net.at(stride))
            stride *= st
            net.pw(f"{name}.project", hidden, c, stride, residual=block_input if st == 1 and cin == c else None)
            cin, idx = c, idx + 1
            taps[stride] = (c, net.last)
    if final_conv:
        net.pw(f"features.{idx}", cin, 1280, stride)
        taps[stride] = (1280, net.last)
    return taps


def deeplabv3plus_mobilenetv2(hw, num_classes: int, network: str, geometry: str = SAME) -> Workload:
    net = _Net(hw, geometry)
    taps = _mobilenetv2(net, output_stride=16)
    low, high = taps[4][1], taps[16][1]
    net.pw("head.project", 24, 48, 4, inputs=[low])
    net.pw("head.aspp.b0", 320, 256, 16, inputs=[high])
    branches = ["head.aspp.b0"]
    for i, rate in enumerate((6, 12, 18), start=1):
        net.separable(f"head.aspp.b{i}", 320, 256, 16, dilation=rate, inputs=[high])
        branches.append(net.last)
    net.edges.append(Edges((high,)))  # through the global average pool, on the fly
    net.layers.append(LayerShape("head.aspp.pool", LayerKind.CONV1X1, 320, 256, 1, 1, 1, 1, 1))
    net.pw("head.aspp.project", 5 * 256, 256, 16, inputs=branches + ["head.aspp.pool"])
    net.separable("head.classifier.0", 304, 256, 4, inputs=["head.aspp.project", "head.project"])
    net.pw("head.classifier.3", 256, num_classes, 4, keep_fp=True)
    return net.workload(network, FpLayers.EXCLUDE)


def monodepth2_mobilenetv2(hw, network: str) -> Workload:
    net = _Net(hw)
    taps = _mobilenetv2(net, output_stride=32, final_conv=True)
    enc = [taps[2], taps[4], taps[8], taps[16], taps[32]]  # (16, 24, 32, 96, 1280 channels, layer name)
    dec = [16, 32, 64, 128, 256]
    cin = enc[4][0]
    for i in range(4, -1, -1):
        in_stride = 2 ** (i + 1)
        net.separable(f"decoder.upconv{i}0", cin, dec[i], in_stride)
        skip, skip_name = enc[i - 1] if i > 0 else (0, None)
        net.separable(f"decoder.upconv{i}1", dec[i] + skip, dec[i], 2 ** i,
                      inputs=[net.last] + ([skip_name] if skip_name else []))
        cin = dec[i]
    for s in range(4):
        net.conv(f"decoder.dispconv{s}", LayerKind.CONV, dec[s], 1, 3, 1, 2 ** s, keep_fp=True,
                 inputs=[f"decoder.upconv{s}1.pw"])
    return net.workload(network, FpLayers.FP32)


WORKLOADS = {
    "deeplabv3plus_mnv2_cityscapes.csv": lambda: deeplabv3plus_mobilenetv2(
        (1024, 2048), 19, "deeplabv3plus_mobilenetv2_cityscapes"),
    "deeplabv3plus_mnv2_voc.csv": lambda: deeplabv3plus_mobilenetv2(
        (513, 513), 21, "deeplabv3plus_mobilenetv2_voc"),
    "deeplabv3plus_mnv2_cityscapes_vainf.csv": lambda: deeplabv3plus_mobilenetv2(
        (1024, 2048), 19, "deeplabv3plus_mobilenetv2_cityscapes_vainf", VAINF),
    "deeplabv3plus_mnv2_voc_vainf.csv": lambda: deeplabv3plus_mobilenetv2(
        (513, 513), 21, "deeplabv3plus_mobilenetv2_voc_vainf", VAINF),
    "monodepth2_mnv2_kitti.csv": lambda: monodepth2_mobilenetv2((192, 640), "monodepth2_mobilenetv2_kitti"),
}


def render(filename: str) -> str:
    """The CSV text of one generated workload."""
    return workload_to_csv(WORKLOADS[filename](), comments=(
        "generated by workloads/make_workloads.py from the published architecture definitions; do not edit",))


def main() -> int:
    for filename in WORKLOADS:
        write_text(HERE / filename, render(filename))
        print(f"wrote workloads/{filename}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 18, the deployed model's own scales: PP-OCRv4 det quantized by onnxruntime's ``quantize_static``
(QDQ, per-channel int8 weights, uint8 activations, its Conv nodes) on four calibration photographs at
256x256, captured on two other images (``skimage:text``, ``skimage:page``), then ``wccsim run`` with
``--scales trace`` and ``calibrate`` on hw_configs/edge_npu.yaml with ``requant.mode`` float32 and
fixed_point. Prints the operators the layers ran as, and per run the network SQNR (dB) of int8 and WCC and
the int8 rows' ``framework_mismatches``. Needs onnx, onnxruntime and rapidocr-onnxruntime.

    PYTHONPATH=. python bench/qdq_scales.py [WORKDIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = (256, 256)
CALIBRATION = ["skimage:astronaut", "skimage:coffee", "skimage:chelsea", "skimage:rocket"]
EVALUATION = ["skimage:text", "skimage:page"]


def _float_det(out: Path) -> None:
    """The rapidocr PP-OCRv4 det model with its ``Constant`` weights as initializers, at opset 13 (per-axis
    DequantizeLinear), as ``quantize_static`` needs it."""
    import onnx
    import rapidocr_onnxruntime
    from onnx import numpy_helper, version_converter

    model = onnx.load(str(Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"))
    consts = [n for n in model.graph.node if n.op_type == "Constant"]
    model.graph.initializer.extend(numpy_helper.from_array(numpy_helper.to_array(n.attribute[0].t), n.output[0])
                                   for n in consts)
    for n in consts:
        model.graph.node.remove(n)
    onnx.save(version_converter.convert_version(model, 13), str(out))


def _quantize(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from wccsim.capture.images import PRESETS, load_image, preprocess_images

    name = onnx.load(str(src)).graph.input[0].name
    batches = iter([{name: preprocess_images([load_image(s)], PRESETS["ppocr_det"], SIZE)} for s in CALIBRATION])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])


def _hw(work: Path, mode: str) -> Path:
    text = (ROOT / "hw_configs" / "edge_npu.yaml").read_text()
    line = "  mode: fixed_point              # gemmlowp / TFLite int32 multiplier + shift\n"
    assert line in text
    path = work / f"edge_npu_{mode}.yaml"
    path.write_text(text.replace(line, f"  mode: {mode}\n"))
    return path


def main(work: Path) -> None:
    import wccsim
    from wccsim.capture.onnx import capture_onnx_trace
    from wccsim.trace import open_trace

    _float_det(work / "det.onnx")
    _quantize(work / "det.onnx", work / "det_q.onnx")
    capture_onnx_trace(str(work / "det_q.onnx"), EVALUATION, work / "det_q.npz", preset="ppocr_det", size=SIZE)
    ops = list(open_trace(work / "det_q.npz").meta["source"]["executed_as"].values())
    print("executed_as", {op: ops.count(op) for op in sorted(set(ops))})
    for mode in ("float32", "fixed_point"):
        for scales in ("trace", "calibrate"):
            for rate in (1.0, 0.5):
                df = wccsim.run(_hw(work, mode), work / "det_q.npz", rate=rate, scales=scales)
                sqnr = wccsim.totals(df).set_index("scheme").sqnr_total_db
                int8 = df[df.scheme == "int8"]
                mism = int8.framework_mismatches
                known = bool(mism.notna().any())
                print(f"{mode:11s} {scales:9s} rate {rate}: int8 {sqnr['int8']:.2f} dB, wcc {sqnr['wcc']:.2f} dB, "
                      f"framework_mismatches {int(mism.sum()) if known else '-'} of {int(int8.out_elems.sum())} "
                      f"outputs, layers with any: {int(np.count_nonzero(mism > 0)) if known else '-'}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d))

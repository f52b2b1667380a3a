"""Shape-only workloads: one `LayerShape` per convolution, loaded from a small CSV file.

A workload file is CSV with ``#`` metadata lines before the header::

    # network: deeplabv3plus_mobilenetv2
    # input: 1024x2048
    # paper_fp_layers: exclude
    name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp
    features.0,conv,3,32,3,2,1,1024,2048,1,1

Two optional columns, after ``keep_fp``, give the graph (files without them still load):
``inputs`` names the layers whose outputs are concatenated into this layer's input (``;``-separated,
``input`` = the network input; empty = the layer before, or the network input for the first layer) and
``residual`` the layer whose output is added to this layer's output (a residual add fused into it; empty =
none). A producer must come earlier in the file; the producers' channels add up to ``cin`` and a residual's
to ``cout``. A producer's map may differ from the consumer's ``h x w`` (an upsample or a global pooling
between them): the consumer reads the stored tensor and resamples it on the fly.
``h, w`` are the layer's input spatial size; outputs use "same" padding, ``ceil(h / stride)``. ``kind``
is ``conv1x1`` (a pointwise convolution, what WCC replaces), ``conv`` (k x k, groups allowed) or
``dwconv`` (depthwise: groups == cin == cout). ``keep_fp = 1`` marks a layer the paper's model transform
keeps in full precision (the first conv and the classifier's last 1x1). ``paper_fp_layers`` says how the
paper's BOPs table counts those layers: ``exclude`` (left out; DeepLabV3+) or ``fp32`` (at 32 x 32 bits;
Monodepth2). ``--input HxW`` rescales every layer by its downsampling factor relative to the input.
An optional ``# geometry:`` line says how the file's sizes were derived: ``same`` (the default) or
``vainf_fixed_padding`` (VainF's MobileNetV2: unpadded convs, each inverted residual block's input padded
by the depthwise dilation, so expand 1x1 layers run on (h + 2d) x (w + 2d); workloads/make_workloads.py).
The sizes are read as written; only ``same`` workloads can be rescaled.
"""

from __future__ import annotations

import csv
import enum
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path

from wccsim.errors import InputError
from wccsim.shape import LayerKind, LayerShape

__all__ = ["LayerKind", "FpLayers", "LayerShape", "Workload", "load_workload", "rescale_workload",
           "workload_to_csv", "parse_input_size", "CSV_COLUMNS", "EDGE_COLUMNS", "NETWORK_INPUT", "Edges",
           "Scheme", "Gemm", "layer_gemm", "SAME", "VAINF"]

CSV_COLUMNS = ("name", "kind", "cin", "cout", "kernel", "stride", "groups", "h", "w", "dilation", "keep_fp")
EDGE_COLUMNS = ("inputs", "residual")
NETWORK_INPUT = "input"
SAME, VAINF = "same", "vainf_fixed_padding"  # workload geometries
_MAX_DIM = 1 << 20
_MAX_LAYERS = 100_000


class FpLayers(enum.Enum):
    """How the paper's BOPs tables count layers kept in full precision."""
    EXCLUDE = "exclude"
    FP32 = "fp32"


@dataclass(frozen=True)
class Edges:
    """Where one layer's tensors come from: the producers concatenated into its input (layer names, or
    `NETWORK_INPUT`) and the producer of a residual added to its output (None: no residual add)."""
    inputs: tuple[str, ...]
    residual: str | None = None


@dataclass(frozen=True)
class Workload:
    """A network as a tuple of layer shapes at a given input size, with each layer's producers
    (`edges`, one per layer; empty: every layer reads the one before) and the padding `geometry` its
    sizes follow (`SAME` or `VAINF`)."""
    network: str
    input_hw: tuple[int, int]
    fp_layers: FpLayers
    layers: tuple[LayerShape, ...]
    edges: tuple[Edges, ...] = ()
    geometry: str = SAME

    def layer_edges(self) -> tuple[Edges, ...]:
        """`edges`, or the chain default (each layer reads the one before; the first the network input)."""
        if self.edges:
            return self.edges
        names = (NETWORK_INPUT,) + tuple(s.name for s in self.layers[:-1])
        return tuple(Edges((n,)) for n in names)


def _int(where, row_no, col, text, lo=1, hi=_MAX_DIM) -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise InputError(where, f"line {row_no}: {col}", f"an integer in [{lo}, {hi}]", repr(text)) from None
    if not lo <= v <= hi:
        raise InputError(where, f"line {row_no}: {col}", f"an integer in [{lo}, {hi}]", v)
    return v


def _layer(where: str, row_no: int, row: dict) -> LayerShape:
    kinds = [k.value for k in LayerKind]
    if row["kind"] not in kinds:
        raise InputError(where, f"line {row_no}: kind", f"one of {', '.join(kinds)}", repr(row["kind"]))
    vals = {c: _int(where, row_no, c, row[c]) for c in ("cin", "cout", "kernel", "stride", "groups", "h", "w",
                                                        "dilation")}
    keep = _int(where, row_no, "keep_fp", row["keep_fp"], 0, 1)
    shape = LayerShape(name=row["name"], kind=LayerKind(row["kind"]), keep_fp=bool(keep), **vals)
    if shape.cin % shape.groups or shape.cout % shape.groups:
        raise InputError(where, f"line {row_no}: groups", "a divisor of cin and cout", shape.groups)
    if shape.kind is LayerKind.CONV1X1 and shape.kernel != 1:
        raise InputError(where, f"line {row_no}: kernel", "1 for kind conv1x1", shape.kernel)
    if shape.kind is LayerKind.DWCONV and not shape.groups == shape.cin == shape.cout:
        raise InputError(where, f"line {row_no}: groups", "groups == cin == cout for kind dwconv",
                         f"groups={shape.groups}, cin={shape.cin}, cout={shape.cout}")
    return shape


def parse_input_size(where: str, field: str, text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``1024x2048``) into (H, W); one-line `InputError` naming `where`/`field`."""
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not all(1 <= int(p) <= _MAX_DIM for p in parts):
        raise InputError(where, field, "HxW with positive integers, e.g. 1024x2048", repr(text))
    return int(parts[0]), int(parts[1])


def load_workload(path: str | os.PathLike) -> Workload:
    """Read a workload CSV (format in the module docstring); one-line `InputError` on any problem, naming
    the file as `path` was given and, for a layer row, its line number in the file (``#`` lines counted)."""
    where = os.fspath(path)
    path = Path(path)
    if not path.is_file():
        raise InputError(where, "", "an existing workload CSV file", "a directory" if path.is_dir()
                         else "no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    meta, body = {}, []  # body: (file line number, line) of the CSV lines
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            meta[key.strip()] = value.strip()
        elif line.strip():
            body.append((line_no, line))
    reader = csv.DictReader(line for _, line in body)
    header = tuple(reader.fieldnames or ())
    if header not in (CSV_COLUMNS, CSV_COLUMNS + EDGE_COLUMNS):
        raise InputError(where, "header", f"{','.join(CSV_COLUMNS)}[,{','.join(EDGE_COLUMNS)}]",
                         ",".join(header) or "nothing")
    rows = [(body[reader.line_num - 1][0], row) for i, row in enumerate(reader) if i < _MAX_LAYERS]
    layers = tuple(_layer(where, line_no, row) for line_no, row in rows)
    if not layers:
        raise InputError(where, "layers", "at least one layer row", "none")
    edges = _edges(where, rows, layers) if header != CSV_COLUMNS else ()
    fp = meta.get("paper_fp_layers", "exclude")
    if fp not in [f.value for f in FpLayers]:
        raise InputError(where, "paper_fp_layers", "exclude or fp32", repr(fp))
    geometry = meta.get("geometry", SAME)
    if geometry not in (SAME, VAINF):
        raise InputError(where, "geometry", f"{SAME} or {VAINF}", repr(geometry))
    input_hw = parse_input_size(where, "input", meta.get("input", f"{layers[0].h}x{layers[0].w}"))
    return Workload(meta.get("network", path.stem), input_hw, FpLayers(fp), layers, edges, geometry)


def _edges(where: str, rows: list, layers: tuple[LayerShape, ...]) -> tuple[Edges, ...]:
    """Each row's `Edges`, checked: producers named earlier (or the network input), channels that add up."""
    cout = {NETWORK_INPUT: layers[0].cin}
    out = []
    for (line_no, row), shape in zip(rows, layers):
        previous = layers[len(out) - 1].name if out else NETWORK_INPUT
        names = tuple(n.strip() for n in (row["inputs"] or "").split(";") if n.strip()) or (previous,)
        residual = (row["residual"] or "").strip() or None
        for field, name in [("inputs", n) for n in names] + [("residual", residual)] * (residual is not None):
            if name not in cout:
                raise InputError(where, f"line {line_no}: {field}", "a layer named on an earlier line, or "
                                 f"{NETWORK_INPUT}", repr(name))
        if sum(cout[n] for n in names) != shape.cin:
            raise InputError(where, f"line {line_no}: inputs", f"producers with {shape.cin} (cin) channels in all",
                             f"{';'.join(names)} with {sum(cout[n] for n in names)}")
        if residual is not None and cout[residual] != shape.cout:
            raise InputError(where, f"line {line_no}: residual", f"a producer of {shape.cout} (cout) channels",
                             f"{residual} with {cout[residual]}")
        cout[shape.name] = shape.cout
        out.append(Edges(names, residual))
    return tuple(out)


def rescale_workload(wl: Workload, input_hw: tuple[int, int]) -> Workload:
    """The same network at another input size: each layer keeps its downsampling factor.

    A layer at h x w under an input of H x W has factor f = round(H / h); at the new input H' it gets
    ceil(H' / f) (strided layers with 'same' padding compose exactly this way). A `VAINF` workload
    raises `InputError` (its padded sizes do not scale; regenerate it at the new size).
    """
    if wl.geometry != SAME:
        raise InputError(wl.network, "input", f"a workload with {SAME} geometry to rescale "
                         "(regenerate it with workloads/make_workloads.py)", wl.geometry)
    (h0, w0), (h1, w1) = wl.input_hw, input_hw
    layers = tuple(replace(s, h=-(-h1 // max(1, round(h0 / s.h))), w=-(-w1 // max(1, round(w0 / s.w))))
                   for s in wl.layers)
    return replace(wl, input_hw=(h1, w1), layers=layers)


def workload_to_csv(wl: Workload, comments: tuple[str, ...] = ()) -> str:
    """Serialize `wl` in the CSV format `load_workload` reads."""
    out = io.StringIO()
    for c in comments:
        out.write(f"# {c}\n")
    out.write(f"# network: {wl.network}\n# input: {wl.input_hw[0]}x{wl.input_hw[1]}\n")
    out.write(f"# paper_fp_layers: {wl.fp_layers.value}\n")
    if wl.geometry != SAME:
        out.write(f"# geometry: {wl.geometry}\n")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS + (EDGE_COLUMNS if wl.edges else ()))
    for s, e in zip(wl.layers, wl.edges or [None] * len(wl.layers)):
        edge_cells = [";".join(e.inputs), e.residual or ""] if e else []
        w.writerow([s.name, s.kind.value, s.cin, s.cout, s.kernel, s.stride, s.groups, s.h, s.w, s.dilation,
                    int(s.keep_fp), *edge_cells])
    return out.getvalue()


class Scheme(enum.Enum):
    """How a layer's activations are represented: WCC, plain int, uniform n-bit at rate*act_bits, ZVC."""
    WCC = "wcc"
    INT8 = "int8"
    UNIFORM_NBIT = "uniform_nbit"
    ZVC = "zvc"


@dataclass(frozen=True)
class Gemm:
    """The matrix product a layer runs on the MAC array, per group.

    ``m`` streamed columns (output positions, or kept wavelet columns for WCC), ``k`` reduction length
    ((cin / groups) * kernel^2), ``n`` outputs per position (cout / groups), repeated ``groups`` times.
    """
    m: int
    k: int
    n: int
    groups: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.groups


def layer_gemm(shape: LayerShape, wcc_columns: int | None) -> Gemm:
    """GEMM of `shape`; `wcc_columns` = k kept columns when the layer runs as WCC, else None."""
    if wcc_columns is not None:
        return Gemm(wcc_columns, shape.cin, shape.cout, 1)
    g = shape.groups
    return Gemm(shape.ho * shape.wo, (shape.cin // g) * shape.kernel ** 2, shape.cout // g, g)

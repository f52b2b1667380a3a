"""Trace format v1: per-layer activations and weights of the 1x1 convolutions of a real network.

A trace is an uncompressed or deflated ``.npz`` (a zip of ``.npy`` members) holding

- ``meta``: a 0-d unicode array with one JSON object::

      {"format": "wccsim-trace", "version": 1, "network": str, "n": int,
       "source": {"tool": str, "model_file": str, "sha256": str, ...},
       "input": {...}, "model_conv_macs": int or null, "skipped": [...],
       "layers": [{"name", "cin", "cout", "h", "w", "stride", "has_bias", "has_y"[, "has_qdq"]}, ...]}

  ``n`` and each layer's ``has_y`` and ``has_qdq`` say what the arrays already say (the image count of
  ``<layer>.x``, the presence of ``<layer>.y``, ``<layer>.yq``): reading never requires them (a trace
  written from DESIGN.md section 6 alone has neither), and when written they must agree with the arrays.
  `write_trace` always writes ``n`` and ``has_y``, and ``has_qdq`` where true (float traces keep their bytes).

- per layer ``<name>.x`` (N, Cin, H, W) input activation, ``<name>.w`` (Cout, Cin) weight, optional
  ``<name>.b`` (Cout,) bias and ``<name>.y`` (N, Cout, Ho, Wo) the framework's own output, with
  ``Ho = (H - 1) // stride + 1`` (a 1x1 convolution without padding).
- optional, per layer of a quantized (ONNX QDQ) model, when ``has_qdq`` (`Qdq`, ``real = (q - zero_point)
  * scale``): ``<name>.x_scale``, ``.y_scale`` () float32, ``.x_zero_point``, ``.y_zero_point`` () int8 or
  uint8 (their dtype is the tensor's), ``.w_scale`` (Cout,) float32, ``.w_zero_point`` (Cout,) int8 or
  uint8, ``.bq`` (Cout,) int32 (the integer bias at ``x_scale * w_scale``; with ``has_bias``) and
  ``.yq`` (N, Cout, Ho, Wo) the framework's own output integers, in ``y_zero_point``'s dtype. A layer
  without ``has_qdq`` in ``meta`` has them when ``<name>.yq`` exists (older traces have none).

Members ``x``, ``w``, ``b``, ``y`` are float16, float32 or float64. Reading returns float32 for
float16/float32 members and float64 for float64 ones (the QDQ members keep their dtypes). `open_trace`
reads only ``meta`` and the ``.npy`` headers (validating every member's name, dtype and shape against
``meta`` before allocating anything); array data is read one layer at a time, so iterating a trace needs
memory for one layer, not for the file. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from wccsim.atomic import atomic_path
from wccsim.errors import InputError
from wccsim.shape import LayerShape

__all__ = ["FORMAT", "VERSION", "LayerInfo", "LayerData", "Qdq", "Trace", "open_trace", "write_trace"]

FORMAT = "wccsim-trace"
VERSION = 1
_SUFFIXES = ("x", "w", "b", "y")
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_CODES = (np.dtype(np.int8), np.dtype(np.uint8))
# QDQ member suffix -> allowed dtypes (`Qdq`)
_QDQ_DTYPES = {"x_scale": (np.dtype(np.float32),), "x_zero_point": _CODES, "w_scale": (np.dtype(np.float32),),
               "w_zero_point": _CODES, "y_scale": (np.dtype(np.float32),), "y_zero_point": _CODES,
               "bq": (np.dtype(np.int32),), "yq": _CODES}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_META_MAX_BYTES = 64 << 20
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_ABS = 1e9  # larger magnitudes are a capture bug (real activations stay below ~1e5) and would overflow
                # the float32 calibration arithmetic (sums of squares)
_STORE_DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Shape record of one 1x1 convolution, as listed in ``meta["layers"]`` (sizes are per sample)."""

    name: str
    cin: int
    cout: int
    h: int
    w: int
    stride: int
    has_bias: bool
    has_y: bool = True
    has_qdq: bool = False

    @property
    def ho(self) -> int:
        """Output height in pixels."""
        return (self.h - 1) // self.stride + 1

    @property
    def wo(self) -> int:
        """Output width in pixels."""
        return (self.w - 1) // self.stride + 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample: Cout * Cin * Ho * Wo."""
        return self.cout * self.cin * self.ho * self.wo

    @property
    def shape(self) -> LayerShape:
        """The layer as the cost model sees it: a 1x1 convolution of this size and stride."""
        return LayerShape.pointwise(self.name, self.cin, self.cout, self.h, self.w, self.stride)

    @property
    def bytes_int8(self) -> int:
        """Bytes moved per sample at 8 bits per value: input map + weights + output map (no bias)."""
        return self.cin * self.h * self.w + self.cout * self.cin + self.cout * self.ho * self.wo

    def shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        """Expected member shapes by suffix for a batch of `n` samples (only members that exist)."""
        out = {"x": (n, self.cin, self.h, self.w), "w": (self.cout, self.cin)}
        if self.has_bias:
            out["b"] = (self.cout,)
        if self.has_y:
            out["y"] = (n, self.cout, self.ho, self.wo)
        if self.has_qdq:
            out.update(x_scale=(), x_zero_point=(), w_scale=(self.cout,), w_zero_point=(self.cout,), y_scale=(),
                       y_zero_point=(), yq=(n, self.cout, self.ho, self.wo))
            if self.has_bias:
                out["bq"] = (self.cout,)
        return out


@dataclasses.dataclass(frozen=True)
class Qdq:
    """A quantized model's own quantizers of one layer and its integer output (ONNX QDQ, as onnxruntime's
    ``quantize_static`` writes it): ``real = (q - zero_point) * scale``.

    Attributes
    ----------
    x_scale, y_scale : 0-d float32 -- input and output scales (real units per step).
    x_zero_point, y_zero_point : 0-d int8 or uint8 -- zero points; the dtype is the tensor's.
    w_scale : (Cout,) float32 -- weight scale per output channel (all equal for per-tensor weights).
    w_zero_point : (Cout,) int8 or uint8 -- weight zero points.
    bq : (Cout,) int32 or None -- the integer bias the framework adds, at scale ``x_scale * w_scale``.
    yq : (N, Cout, Ho, Wo) int8 or uint8 -- the framework's output integers (``y_zero_point``'s dtype).
    """

    x_scale: np.ndarray
    x_zero_point: np.ndarray
    w_scale: np.ndarray
    w_zero_point: np.ndarray
    y_scale: np.ndarray
    y_zero_point: np.ndarray
    bq: np.ndarray | None
    yq: np.ndarray


@dataclasses.dataclass(frozen=True)
class LayerData:
    """Arrays of one layer.

    Attributes
    ----------
    name : str
    x : ndarray, (N, Cin, H, W), float32 or float64 -- input activation.
    w : ndarray, (Cout, Cin), float32 or float64 -- weight of the 1x1 convolution.
    b : ndarray (Cout,) or None -- bias.
    y : ndarray (N, Cout, Ho, Wo) or None -- the framework's own output for exactly this `x`.
    stride : int -- spatial stride (same in H and W).
    qdq : Qdq or None -- the quantized model's own quantizers and integer output.
    """

    name: str
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    y: np.ndarray | None
    stride: int = 1
    qdq: Qdq | None = None

    def info(self) -> LayerInfo:
        """The `LayerInfo` these arrays describe (shapes are not validated here)."""
        n, cin, h, w = self.x.shape
        return LayerInfo(self.name, int(cin), int(self.w.shape[0]), int(h), int(w), int(self.stride),
                         self.b is not None, self.y is not None, self.qdq is not None)

    def members(self) -> dict[str, np.ndarray]:
        """Every array by member suffix (absent ones left out)."""
        out = {s: getattr(self, s) for s in _SUFFIXES if getattr(self, s) is not None}
        if self.qdq is not None:
            out.update({s: getattr(self.qdq, s) for s in _QDQ_DTYPES if getattr(self.qdq, s) is not None})
        return out


class Trace:
    """A trace file opened for lazy, layer-by-layer reading. Use `open_trace` to make one.

    Attributes
    ----------
    path : Path
    meta : dict -- the parsed JSON ``meta`` member.
    layers : list of LayerInfo -- in file order.
    n : int -- samples (images) per layer (from the arrays; ``meta["n"]``, when written, agrees).
    """

    def __init__(self, path: Path, meta: dict, layers: list[LayerInfo], n: int):
        self.path, self.meta, self.layers, self.n = path, meta, layers, n
        self._by_name = {li.name: li for li in layers}
        self._sha256: str | None = None

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerData]:
        for li in self.layers:
            yield self.layer(li.name)

    def layer(self, name: str) -> LayerData:
        """Read and validate the arrays of layer `name` (finite values, shapes as in ``meta``)."""
        if name not in self._by_name:
            raise InputError(str(self.path), "layer", f"one of {len(self.layers)} layer names", repr(name))
        li = self._by_name[name]
        with _open_zip(self.path) as zf:
            arrays = {s: _read_member(zf, self.path, f"{name}.{s}", shape)
                      for s, shape in li.shapes(self.n).items()}
        qdq = _qdq(str(self.path), name, arrays) if li.has_qdq else None
        return LayerData(name, arrays["x"], arrays["w"], arrays.get("b"), arrays.get("y"), li.stride, qdq)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file, computed by streaming it once."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        return self._sha256


def open_trace(path: str | os.PathLike) -> Trace:
    """Open a trace: parse ``meta`` and check every member header, reading no array data.

    Raises
    ------
    InputError
        One line naming the file and member: unreadable/truncated zip, missing or unexpected member,
        pickled (object) or non-float dtype, shape disagreeing with ``meta`` or with the first layer's
        image count, ``meta.n`` or a ``has_y`` disagreeing with the arrays, unknown format or version, or
        a layer larger than the memory available.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "", "an existing trace file (.npz)",
                         "a directory" if path.is_dir() else "no such file")
    with _open_zip(path) as zf:
        meta = _parse_meta(path, _read_member(zf, path, "meta", (), meta=True))
        names = set(zf.namelist())
        layers = _layer_infos(path, meta, names)
        _check_member_names(path, names, layers)
        n = _image_count(zf, path, meta, layers[0])
        for member, shape in _expected_members(layers, n).items():
            _check_header(zf, path, member, shape)
    _check_memory(path, layers, n)
    return Trace(path, meta, layers, n)


def write_trace(path: str | os.PathLike, meta: dict, layers: Iterable[LayerData], *,
                store_dtype: str = "float32", compress: bool = False) -> list[LayerInfo]:
    """Write a v1 trace atomically (temporary file, then rename), streaming one layer at a time.

    Parameters
    ----------
    path : destination ``.npz``.
    meta : dict
        Top-level meta fields (``network``, ``source``, ``input``, ...). ``format``, ``version``, ``n`` and
        ``layers`` are filled in here from the data.
    layers : iterable of LayerData
        Consumed once; each layer is validated (shapes, finite values) before it is written.
    store_dtype : "float16", "float32" or "float64"
        Storage dtype of ``.x``; ``.w``, ``.b`` and ``.y`` keep float32 (or float64 when given so), so
        the ``.y`` check against a float64 reference stays meaningful. float16 storage is honest only
        when ``y`` was computed from the float16-rounded ``x`` (the capture modules do that).
    compress : bool
        Deflate members (smaller file, slower reading).

    Returns
    -------
    list of LayerInfo, in file order.
    """
    if store_dtype not in _STORE_DTYPES:
        raise InputError("write_trace", "store_dtype", f"one of {sorted(_STORE_DTYPES)}", store_dtype)
    where = str(path)
    infos, n = [], None
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            for ld in layers:
                li = _validate_layer_data(where, ld)
                if n is None:
                    n = ld.x.shape[0]
                elif ld.x.shape[0] != n:
                    raise InputError(where, f"{ld.name}.x", f"batch size {n} like the first layer",
                                     ld.x.shape[0])
                if li.name in {i.name for i in infos}:
                    raise InputError(where, "layers", "unique layer names", f"duplicate {li.name!r}")
                infos.append(li)
                for s, arr in ld.members().items():
                    stored = _store(arr, _STORE_DTYPES[store_dtype] if s == "x" else np.float32) \
                        if s in _SUFFIXES else arr
                    _write_member(zf, f"{ld.name}.{s}", stored)
            if not infos:
                raise InputError(where, "layers", "at least one layer", "none")
            full = dict(meta, format=FORMAT, version=VERSION, n=int(n),
                        layers=[_layer_meta(i) for i in infos])
            _write_member(zf, "meta", np.array(json.dumps(full, sort_keys=True)))
    return infos


# ----------------------------------------------------------------------------------------------- helpers

def _layer_meta(li: LayerInfo) -> dict:
    """``meta["layers"]`` entry: ``has_qdq`` only when true, so float traces keep their bytes."""
    d = dataclasses.asdict(li)
    if not li.has_qdq:
        del d["has_qdq"]
    return d


def _store(arr: np.ndarray, dtype) -> np.ndarray:
    """`arr` in storage dtype: float64 stays float64, everything else becomes `dtype`."""
    return arr if arr.dtype == np.float64 and dtype != np.float16 else arr.astype(dtype, copy=False)


def _write_member(zf: zipfile.ZipFile, member: str, arr: np.ndarray) -> None:
    info = zipfile.ZipInfo(member + ".npy", date_time=_ZIP_DATE)  # fixed date: same data, same bytes
    info.compress_type = zf.compression
    with zf.open(info, "w", force_zip64=True) as f:
        np.lib.format.write_array(f, arr if arr.flags.c_contiguous else arr.copy(order="C"),
                                 allow_pickle=False)


class _open_zip:  # noqa: N801 - used like a function in `with`
    """Context manager opening a zip, turning any zip or OS failure into a one-line `InputError`."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> zipfile.ZipFile:
        try:
            self.zf = zipfile.ZipFile(self.path, "r")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise InputError(str(self.path), "", "a readable .npz (zip) file",
                             f"{type(e).__name__}: {e} (truncated or not a trace?)") from None
        return self.zf

    def __exit__(self, *exc) -> None:
        self.zf.close()



def _read_header(f, where: str, member: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in reader:
            raise ValueError(f"unsupported .npy version {version}")
        return reader[version](f, max_header_size=10000)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, SyntaxError) as e:
        raise InputError(where, member, "a valid .npy header", f"{type(e).__name__}: {e}") from None


def _allowed(member: str) -> tuple[np.dtype, ...]:
    """Dtypes a layer member may have, from its suffix."""
    return _QDQ_DTYPES.get(member.rsplit(".", 1)[-1], _FLOATS)


def _check_dtype(where: str, member: str, dtype: np.dtype, meta: bool = False) -> None:
    if dtype.hasobject:
        raise InputError(where, member, "a numeric array (pickled objects are never loaded)", f"dtype {dtype}")
    if meta and dtype.kind != "U":
        raise InputError(where, member, "a unicode JSON string", f"dtype {dtype}")
    allowed = _allowed(member)
    if not meta and dtype.newbyteorder("=") not in allowed:
        names = "float16, float32 or float64" if allowed == _FLOATS else " or ".join(str(d) for d in allowed)
        raise InputError(where, member, names, f"dtype {dtype}")


def _check_header(zf: zipfile.ZipFile, path: Path, member: str, shape: tuple[int, ...]) -> None:
    """Validate one array member's header (dtype, order, shape, stored size) without reading its data."""
    with zf.open(member + ".npy") as f:
        _header(f, zf.getinfo(member + ".npy").file_size, str(path), member, shape, False)


def _header(f, file_size: int, where: str, member: str, shape: tuple[int, ...], meta: bool) -> np.dtype:
    got_shape, fortran, dtype = _read_header(f, where, member)
    _check_dtype(where, member, dtype, meta)
    if fortran:
        raise InputError(where, member, "C-ordered array", "Fortran order")
    if tuple(got_shape) != tuple(shape):
        raise InputError(where, member, f"shape {tuple(shape)} (from meta and the first layer's N)",
                         f"shape {tuple(got_shape)}")
    nbytes = int(np.prod(got_shape, dtype=np.int64)) * dtype.itemsize
    if meta and nbytes > _META_MAX_BYTES:
        raise InputError(where, member, f"at most {_META_MAX_BYTES} bytes", f"{nbytes} bytes")
    if file_size != f.tell() + nbytes:
        raise InputError(where, member, f"{f.tell() + nbytes} bytes", f"{file_size} bytes (truncated?)")
    return dtype


def _read_member(zf: zipfile.ZipFile, path: Path, member: str, shape: tuple[int, ...],
                 meta: bool = False) -> np.ndarray:
    """Read one member into a fresh array (never unpickling), checking header, size and finiteness."""
    where = str(path)
    if member + ".npy" not in zf.namelist():
        raise InputError(where, member, "a member of the trace", "missing")
    with zf.open(member + ".npy") as f:
        dtype = _header(f, zf.getinfo(member + ".npy").file_size, where, member, shape, meta)
        out = np.empty(shape, dtype=dtype)
        try:
            got = _readinto(f, out.reshape(-1).view(np.uint8))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise InputError(where, member, "readable data", f"{type(e).__name__}: {e}") from None
    if got != out.nbytes:
        raise InputError(where, member, f"{out.nbytes} data bytes", f"{got} (truncated)")
    if meta or out.dtype.kind != "f" or member.rsplit(".", 1)[-1] in _QDQ_DTYPES:
        return out.astype(out.dtype.newbyteorder("="), copy=False)
    out = out.astype(np.float32 if out.dtype.itemsize <= 4 else np.float64, copy=False)
    bad = _count_bad_values(out)
    if bad:
        raise InputError(where, member, f"finite values of magnitude at most {_MAX_ABS:g}",
                         f"{bad} NaN/Inf or larger values")
    return out


def _readinto(f, buf: np.ndarray, chunk_bytes: int = 8 << 20) -> int:
    """Fill the uint8 array `buf` from `f` in chunks (zip streams copy through a temporary of the read
    size); returns the number of bytes read, short at end of data."""
    got = 0
    while got < buf.size:
        n = f.readinto(buf[got:got + chunk_bytes])
        if not n:
            break
        got += n
    return got


def _count_bad_values(arr: np.ndarray, chunk: int = 1 << 20) -> int:
    """Number of NaN/Inf values or values of magnitude above `_MAX_ABS`, checked in chunks so no
    array-sized temporary is made."""
    flat = arr.reshape(-1)
    limit = np.asarray(min(_MAX_ABS, float(np.finfo(arr.dtype).max)), dtype=arr.dtype)  # no overflowing cast
    return sum(int(part.size - np.count_nonzero(np.abs(part) <= limit))
               for part in (flat[i:i + chunk] for i in range(0, flat.size, chunk)))


def _parse_meta(path: Path, arr: np.ndarray) -> dict:
    where = str(path)
    if arr.shape != ():
        raise InputError(where, "meta", "a 0-d JSON string", f"shape {arr.shape}")
    try:
        meta = json.loads(str(arr[()]))
    except json.JSONDecodeError as e:
        raise InputError(where, "meta", "valid JSON", str(e)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(where, "meta.format", repr(FORMAT), repr(got))
    if meta.get("version") != VERSION:
        raise InputError(where, "meta.version", f"{VERSION} (this wccsim reads format v{VERSION})",
                         repr(meta.get("version")))
    if "n" in meta and not _is_pos_int(meta["n"]):
        raise InputError(where, "meta.n", "a positive integer when written", repr(meta["n"]))
    if not isinstance(meta.get("layers"), list) or not meta["layers"]:
        raise InputError(where, "meta.layers", "a non-empty list", repr(meta.get("layers"))[:80])
    _check_optional_meta(where, meta)
    return meta


_OPTIONAL_META = {"network": (str, "a string"), "source": (dict, "an object"), "input": (dict, "an object"),
                  "skipped": (list, "a list")}


def _check_optional_meta(where: str, meta: dict) -> None:
    """Types of the descriptive fields that `trace info` and run.json read (each may be absent)."""
    for key, (typ, what) in _OPTIONAL_META.items():
        if key in meta and not isinstance(meta[key], typ):
            raise InputError(where, f"meta.{key}", what, repr(meta[key])[:80])
    macs = meta.get("model_conv_macs")
    if macs is not None and not (isinstance(macs, int) and not isinstance(macs, bool) and macs >= 0):
        raise InputError(where, "meta.model_conv_macs", "null or a non-negative integer", repr(macs)[:80])
    for i, item in enumerate(meta.get("skipped", [])):
        if not isinstance(item, dict) or not isinstance(item.get("reason"), str):
            raise InputError(where, f"meta.skipped[{i}]", "an object with a string reason", repr(item)[:80])


def _is_pos_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _layer_infos(path: Path, meta: dict, names: set[str]) -> list[LayerInfo]:
    """Layer records from ``meta["layers"]``; a layer without ``has_y`` has one when ``<name>.y`` exists."""
    where, out, seen = str(path), [], set()
    for i, d in enumerate(meta["layers"]):
        field = f"meta.layers[{i}]"
        if not isinstance(d, dict):
            raise InputError(where, field, "an object", type(d).__name__)
        name = d.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in seen:
            raise InputError(where, f"{field}.name", "a unique name of letters, digits, _ and -", repr(name))
        seen.add(name)
        for k in ("cin", "cout", "h", "w", "stride"):
            if not _is_pos_int(d.get(k)):
                raise InputError(where, f"{field}.{k}", "a positive integer (no zero-size dims)", repr(d.get(k)))
        if not isinstance(d.get("has_bias"), bool):
            raise InputError(where, f"{field}.has_bias", "true or false", repr(d.get("has_bias")))
        has_y = d.get("has_y", f"{name}.y.npy" in names)
        if not isinstance(has_y, bool):
            raise InputError(where, f"{field}.has_y", "true or false when written", repr(has_y))
        has_qdq = d.get("has_qdq", f"{name}.yq.npy" in names)
        if not isinstance(has_qdq, bool):
            raise InputError(where, f"{field}.has_qdq", "true or false when written", repr(has_qdq))
        out.append(LayerInfo(name, d["cin"], d["cout"], d["h"], d["w"], d["stride"], d["has_bias"], has_y,
                             has_qdq))
    return out


def _image_count(zf: zipfile.ZipFile, path: Path, meta: dict, first: LayerInfo) -> int:
    """N, the image count: the first dimension of the first layer's ``.x``, which ``meta.n`` (when
    written) must equal; every other member is then checked against it."""
    member = f"{first.name}.x"
    with zf.open(member + ".npy") as f:
        shape = tuple(_read_header(f, str(path), member)[0])
    if len(shape) != 4 or not _is_pos_int(shape[0]):
        raise InputError(str(path), member, f"shape (N, {first.cin}, {first.h}, {first.w}) with N > 0",
                         f"shape {shape}")
    if "n" in meta and meta["n"] != shape[0]:
        raise InputError(str(path), "meta.n", f"{shape[0]} (the image count of {member})", meta["n"])
    return shape[0]


def _expected_members(layers: list[LayerInfo], n: int) -> dict[str, tuple[int, ...]]:
    return {f"{li.name}.{s}": shape for li in layers for s, shape in li.shapes(n).items()}


def _check_member_names(path: Path, names: set[str], layers: list[LayerInfo]) -> None:
    expected = list(_expected_members(layers, 1))  # the names only: shapes are checked once N is known
    for member in expected:
        if member + ".npy" not in names:
            raise InputError(str(path), member, "a member of the trace (listed in meta)", "missing")
    extra = sorted(names - {m + ".npy" for m in expected} - {"meta.npy"})
    if extra:
        raise InputError(str(path), extra[0], "only members listed in meta", "an unexpected member")


def _available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _check_memory(path: Path, layers: list[LayerInfo], n: int) -> None:
    """Refuse before allocating if one layer (as float64, the widest) needs more than the free memory."""
    avail = _available_memory_bytes()
    for li in layers:
        need = 8 * sum(int(np.prod(s, dtype=np.int64)) for s in li.shapes(n).values())
        if need > avail:
            raise InputError(str(path), f"meta.layers[{li.name}]", f"a layer that fits in {avail} free bytes",
                             f"{need} bytes")


def _validate_layer_data(where: str, ld: LayerData) -> LayerInfo:
    """Check a LayerData before writing: names, dims, dtypes, shapes, finiteness (`Qdq`: scales too)."""
    if not _NAME_RE.match(ld.name):
        raise InputError(where, "layer name", "letters, digits, _ and -", repr(ld.name))
    if not _is_pos_int(int(ld.stride)):
        raise InputError(where, f"{ld.name}.stride", "a positive integer", ld.stride)
    arrays = ld.members()
    for s, arr in arrays.items():
        if not isinstance(arr, np.ndarray) or arr.dtype not in _allowed(s):
            names = "a float16/32/64 ndarray" if _allowed(s) == _FLOATS else \
                f"an ndarray of {' or '.join(str(d) for d in _allowed(s))}"
            raise InputError(where, f"{ld.name}.{s}", names, getattr(arr, "dtype", type(arr)))
    if ld.x.ndim != 4 or ld.w.ndim != 2 or min(ld.x.shape) == 0 or min(ld.w.shape) == 0:
        raise InputError(where, f"{ld.name}.x/.w", "(N,Cin,H,W) and (Cout,Cin) with no zero-size dim",
                         f"{ld.x.shape} and {ld.w.shape}")
    li = ld.info()
    want = li.shapes(ld.x.shape[0])
    for s, arr in arrays.items():
        if arr.shape != want[s]:
            raise InputError(where, f"{ld.name}.{s}", f"shape {want[s]}", f"shape {arr.shape}")
        bad = _count_bad_values(arr) if s in _SUFFIXES else 0
        if bad:
            raise InputError(where, f"{ld.name}.{s}", f"finite values of magnitude at most {_MAX_ABS:g}",
                             f"{bad} NaN/Inf or larger values")
    if ld.qdq is not None:
        _qdq(where, ld.name, arrays)
    return li


def _qdq(where: str, name: str, arrays: dict[str, np.ndarray]) -> Qdq:
    """The `Qdq` of a layer's members (shapes and dtypes already checked): scales finite and > 0, ``yq`` in
    ``y_zero_point``'s dtype."""
    for s in ("x_scale", "w_scale", "y_scale"):
        a = arrays[s]
        if not (np.all(np.isfinite(a)) and np.all(a > 0)):
            raise InputError(where, f"{name}.{s}", "finite scales > 0", f"{a.ravel()[:4].tolist()}")
    if arrays["yq"].dtype != arrays["y_zero_point"].dtype:
        raise InputError(where, f"{name}.yq", f"dtype {arrays['y_zero_point'].dtype} (y_zero_point's)",
                         f"dtype {arrays['yq'].dtype}")
    return Qdq(*(arrays.get(s) for s in _QDQ_DTYPES))

"""Test vectors for RTL: every datapath stage of one layer as ``$readmemh`` hex files plus a manifest.

A vectors directory holds, for one layer (or one spatial tile of it) simulated by
`wccsim.simulate.simulate_layer`:

- one ``<stage>.hex`` file per stage, in the hardware order of ``LayerResult.stages``: one word per line,
  lower-case hex, ``ceil(width_bits / 4)`` digits, two's complement at the declared width for signed
  stages, plain binary for unsigned ones. Words follow the stage array in C (row-major) order over the
  axes named by its ``order``, i.e. the order in which the hardware streams them. Verilog reads a file
  with ``reg [W-1:0] mem [0:COUNT-1]; $readmemh("<stage>.hex", mem);``.
- ``manifest.json``: format, version, wccsim version, layer name, tile, rate and the datapath knobs used,
  and per stage its file, shape, width_bits, signed, element order, zero point, scale and word count.

A value that does not fit its declared width is an error (`ValueError` naming the stage), never a silent
wrap. `read_vectors` returns exactly the integers that were written.

Examples
--------
>>> to_hex_words(np.array([-1, 0, 5, -8]), 4, signed=True)
'f\\n0\\n5\\n8\\n'
>>> from_hex_words('f\\n0\\n5\\n8\\n', 4, signed=True).tolist()
[-1, 0, 5, -8]
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from wccsim import __version__
from wccsim.atomic import ensure_dir, write_errors
from wccsim.errors import InputError
from wccsim.simulate import simulate_layer

__all__ = ["FORMAT", "VERSION", "MANIFEST", "Tile", "parse_tile", "crop_tile", "export_layer",
           "write_vectors", "read_vectors", "read_manifest", "haar_testbenches", "to_hex_words",
           "from_hex_words"]

FORMAT = "wccsim-vectors"
VERSION = 1
MANIFEST = "manifest.json"
_ROUND_CODE = {"half_up": 0, "floor": 1, "half_even": 2}
_HEX_WORD = re.compile(r"[0-9a-fA-F]+")
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class Tile:
    """A spatial tile of a layer's input: ``h x w`` pixels with top-left corner at row ``y0``, column ``x0``."""
    h: int
    w: int
    y0: int = 0
    x0: int = 0


def parse_tile(text: str) -> Tile:
    """Parse ``HxW`` or ``HxW@Y,X`` (sizes and offsets in input pixels).

    >>> parse_tile("16x32@8,0")
    Tile(h=16, w=32, y0=8, x0=0)
    """
    size, _, at = text.strip().partition("@")
    try:
        h, w = (int(v) for v in size.lower().split("x"))
        y0, x0 = (int(v) for v in at.split(",")) if at else (0, 0)
    except ValueError:
        raise InputError("options", "tile", "HxW or HxW@Y,X with integers, e.g. 16x16", text) from None
    if h < 1 or w < 1 or y0 < 0 or x0 < 0:
        raise InputError("options", "tile", "positive sizes and non-negative offsets", text)
    return Tile(h, w, y0, x0)


def crop_tile(x: np.ndarray, tile: Tile | None) -> np.ndarray:
    """Crop (N, C, H, W) to ``tile`` (None: the whole map); a tile reaching outside the map is an error."""
    if tile is None:
        return x
    h, w = x.shape[2:]
    if tile.y0 + tile.h > h or tile.x0 + tile.w > w:
        raise InputError("options", "tile", f"a tile inside the {h}x{w} input map",
                         f"{tile.h}x{tile.w}@{tile.y0},{tile.x0}")
    return x[:, :, tile.y0: tile.y0 + tile.h, tile.x0: tile.x0 + tile.w]


def export_layer(layer, hw, rate: float, out_dir: str | os.PathLike, tile: Tile | None = None) -> Path:
    """Simulate one trace layer (or a spatial tile of it) and write its vectors.

    Parameters
    ----------
    layer : LayerData
        From ``open_trace(path).layer(name)``: x (N, Cin, H, W), w (Cout, Cin), b (Cout,) or None, stride.
    hw : HwSpec
        Hardware; its ``datapath`` drives `simulate_layer` and is recorded in the manifest.
    rate : float
        Fraction of Haar positions kept, (0, 1].
    out_dir : path
        Vectors directory (see `write_vectors`).
    tile : Tile, optional
        Crop of the input simulated as a layer of its own (its own calibration and top-k).

    Returns
    -------
    Path
        ``out_dir``.
    """
    x = crop_tile(layer.x, tile)
    result = simulate_layer(x, layer.w, layer.b, hw.datapath, rate, stride=layer.stride)
    return write_vectors(result, hw, out_dir, layer.name, tile=tile, rate=rate)


def _word_range(width_bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive value range of a ``width_bits`` register, signed or unsigned."""
    if signed:
        return -(1 << (width_bits - 1)), (1 << (width_bits - 1)) - 1
    return 0, (1 << width_bits) - 1


def to_hex_words(values: np.ndarray, width_bits: int, signed: bool, name: str = "values") -> str:
    """Encode integers as ``$readmemh`` words: one per line, ``ceil(width_bits/4)`` lower-case hex digits.

    Parameters
    ----------
    values : np.ndarray
        Any shape, integer dtype; encoded in C order.
    width_bits : int
        Declared register width, 1..64.
    signed : bool
        Two's complement (True) or unsigned binary (False).
    name : str
        Stage name for error messages.

    Returns
    -------
    str
        The file text, one word per line, each line ending in ``\\n``.

    Raises
    ------
    ValueError
        If the dtype is not integer, the width is out of 1..64, or a value does not fit the width.
    """
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"vectors: stage {name!r}: expected integer values, got dtype {v.dtype}")
    if not 1 <= width_bits <= 64:
        raise ValueError(f"vectors: stage {name!r}: width_bits must be in 1..64, got {width_bits}")
    v = v.ravel()
    _check_fits(v, width_bits, signed, name)
    digits = -(-width_bits // 4)
    u = v.astype(np.int64).view(np.uint64) if signed else v.astype(np.uint64)
    u = u & np.uint64((1 << width_bits) - 1)  # two's complement at the declared width
    shifts = np.arange(4 * (digits - 1), -1, -4, dtype=np.uint64)
    nibbles = (u[:, None] >> shifts[None, :]) & np.uint64(0xF)
    chars = np.empty((u.size, digits + 1), dtype=np.uint8)
    chars[:, :digits] = _HEX_DIGITS[nibbles.astype(np.intp)]
    chars[:, digits] = ord("\n")
    return chars.tobytes().decode("ascii")


def _check_fits(v: np.ndarray, width_bits: int, signed: bool, name: str) -> None:
    """Raise ValueError when any value lies outside the declared register range."""
    if v.size == 0:
        return
    lo, hi = _word_range(width_bits, signed)
    vmin, vmax = int(v.min()), int(v.max())
    if vmin < lo or vmax > hi:
        bad = vmin if vmin < lo else vmax
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"vectors: stage {name!r}: value {bad} does not fit {width_bits}-bit {kind} "
                         f"range [{lo}, {hi}]")


def from_hex_words(text: str, width_bits: int, signed: bool, name: str = "values") -> np.ndarray:
    """Decode ``$readmemh`` words (whitespace separated hex) into int64 values.

    Parameters
    ----------
    text : str
        File text; ``//`` comments and ``@address`` directives are not supported.
    width_bits : int
        Declared register width, 1..64.
    signed : bool
        Interpret words as two's complement at ``width_bits`` (True) or unsigned (False).
    name : str
        Stage name for error messages.

    Returns
    -------
    np.ndarray
        1-D int64 (unsigned 64-bit words above 2^63 - 1 cannot be represented and raise).

    Raises
    ------
    ValueError
        On a token that is not hex or a word wider than ``width_bits``.
    """
    tokens = text.split()
    bad = next((t for t in tokens if not _HEX_WORD.fullmatch(t)), None)
    if bad is not None:
        raise ValueError(f"vectors: stage {name!r}: expected bare hex words, got {bad!r}")
    words = [int(t, 16) for t in tokens]
    if words and max(words) >> width_bits:
        raise ValueError(f"vectors: stage {name!r}: word {max(words):x} is wider than {width_bits} bits")
    if signed:
        half, full = 1 << (width_bits - 1), 1 << width_bits
        words = [w - full if w >= half else w for w in words]
    elif words and max(words) > np.iinfo(np.int64).max:
        raise ValueError(f"vectors: stage {name!r}: unsigned word {max(words):x} exceeds int64")
    return np.array(words, dtype=np.int64)


def _jsonable(obj):
    """Dataclasses, enums, numpy scalars and arrays as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


def _stage_files(stages: dict) -> list[tuple[str, str, dict]]:
    """Per stage: (file name, file text, manifest entry), checking every value against its width."""
    out = []
    for name, st in stages.items():
        values = np.asarray(st.values)
        text = to_hex_words(values, int(st.width_bits), bool(st.signed), name)
        entry = {"stage": name, "file": f"{name}.hex", "shape": list(values.shape),
                 "count": int(values.size), "width_bits": int(st.width_bits), "signed": bool(st.signed),
                 "order": _jsonable(st.order), "zero_point": int(getattr(st, "zero_point", 0)),
                 "scale": _jsonable(st.scale)}
        out.append((entry["file"], text, entry))
    return out


def write_vectors(result, hw, out_dir: str | os.PathLike, layer_name: str, tile=None,
                  rate: float | None = None) -> Path:
    """Write every stage of a simulated layer as ``$readmemh`` hex files plus ``manifest.json``.

    Parameters
    ----------
    result : LayerResult
        From `simulate_layer`; ``result.stages`` maps stage name to a Stage (values int64 ndarray,
        width_bits, signed, scale, order), in hardware order.
    hw : HwSpec or DatapathSpec
        The knobs the layer was simulated with (recorded in the manifest).
    out_dir : path
        Directory to create or replace. An existing directory is replaced only if it is empty or holds
        a vectors manifest; anything else is refused.
    layer_name : str
        Recorded in the manifest.
    tile : Tile, optional
        Spatial tile recorded in the manifest as ``{"h", "w", "y0", "x0"}``.
    rate : float, optional
        Keep rate recorded in the manifest.

    Returns
    -------
    Path
        ``out_dir``. All files appear at once: they are written to a temporary directory beside it,
        which is then renamed into place.

    Raises
    ------
    ValueError
        If a stage holds a value outside its declared width (nothing is written).
    """
    out_dir = Path(out_dir)
    files = _stage_files(result.stages)
    datapath = getattr(hw, "datapath", hw)
    manifest = {"format": FORMAT, "version": VERSION, "wccsim_version": __version__,
                "layer": layer_name, "tile": _jsonable(tile), "rate": rate,
                "hw_name": getattr(hw, "name", None), "datapath": _jsonable(datapath),
                "stages": [entry for _, _, entry in files]}
    _check_replaceable(out_dir)
    ensure_dir(out_dir.parent)
    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.tmp"
    with write_errors(out_dir):
        tmp.mkdir()  # honours the umask, unlike tempfile.mkdtemp
        try:
            for fname, text, _ in files:
                _write_synced(tmp / fname, text)
            _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False) + "\n")
            _swap_in(tmp, out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return out_dir


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but an empty directory or a previous vectors directory."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(str(out_dir), "", "a directory for test vectors", "an existing file")
    if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise InputError(str(out_dir), "", "an empty or previous vectors directory (with manifest.json)",
                         "a non-empty directory without one")


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` onto ``out_dir``, moving a previous ``out_dir`` aside first and deleting it after."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.old"
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old)


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """Load and check ``manifest.json`` of a vectors directory.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a wccsim-vectors manifest of a supported version.
    """
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), "", "a vectors manifest", "no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(str(path), "", "JSON", f"{type(e).__name__}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(str(path), "format", repr(FORMAT), manifest.get("format")
                         if isinstance(manifest, dict) else type(manifest).__name__)
    if manifest.get("version") != VERSION:
        raise InputError(str(path), "version", str(VERSION), manifest.get("version"))
    return manifest


def read_vectors(out_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every stage of a vectors directory back as int64 arrays of the recorded shapes.

    Parameters
    ----------
    out_dir : path
        A directory written by `write_vectors` (or by an RTL simulation in the same format).

    Returns
    -------
    dict[str, np.ndarray]
        Stage name -> int64 array, in manifest (hardware) order; exactly the written integers.

    Raises
    ------
    InputError
        On a missing file, a word count that disagrees with the recorded shape, or a malformed word.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    out = {}
    for i, entry in enumerate(manifest.get("stages", [])):
        where = f"{out_dir / MANIFEST}: stages[{i}]"
        try:
            name, fname, shape = entry["stage"], entry["file"], tuple(int(s) for s in entry["shape"])
            width, signed = int(entry["width_bits"]), bool(entry["signed"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(where, "", "stage, file, shape, width_bits and signed", repr(e)) from None
        path = out_dir / fname
        if Path(fname).name != fname or not path.is_file():
            raise InputError(str(path), "", "a hex file in the vectors directory", "missing")
        try:
            values = from_hex_words(path.read_text(encoding="ascii"), width, signed, name)
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(str(path), "", f"{width}-bit hex words", str(e)) from None
        if values.size != int(np.prod(shape, dtype=np.int64)):
            raise InputError(str(path), "", f"{int(np.prod(shape))} words for shape {list(shape)}",
                             values.size)
        out[name] = values.reshape(shape)
    return out


def haar_testbenches(manifest: dict) -> dict[str, dict]:
    """Parameters and files for the Haar testbenches ``rtl/tb/tb_haar_fwd.v`` and ``tb_haar_inv.v``.

    Parameters
    ----------
    manifest : dict
        From `read_manifest` of a layer's vectors (needs stages input_q, haar_coef, zero_filled, inverse).

    Returns
    -------
    dict
        ``{"tb_haar_fwd": {"params": {...}, "in": "input_q.hex", "expect": "haar_coef.hex"},
        "tb_haar_inv": {"params": {...}, "in": "zero_filled.hex", "expect": "inverse.hex"}}``; params are
        the testbench's Verilog parameters (``-P<tb>.<NAME>=<value>`` for iverilog), files are relative
        to the vectors directory.

    Raises
    ------
    InputError
        If a needed stage is missing or the input has a non-zero zero point.
    """
    st = {e["stage"]: e for e in manifest["stages"]}
    for name in ("input_q", "haar_coef", "zero_filled", "inverse"):
        if name not in st:
            raise InputError(MANIFEST, "stages", f"a stage named {name!r}", "missing")
    inp, inv, haar = st["input_q"], st["inverse"], manifest["datapath"]["haar"]
    if inp["zero_point"] != 0:
        raise InputError(MANIFEST, "input_q.zero_point", "0 (the Haar testbench takes q - zp = q)",
                         inp["zero_point"])
    n, c, h, w = inp["shape"]
    common = {"LEVELS": haar["levels"], "ROUND": _ROUND_CODE[haar["rounding"]]}
    fwd = dict(NC=n * c, H=h, W=w, IN_W=inp["width_bits"], IN_SIGNED=int(inp["signed"]),
               OUT_W=st["haar_coef"]["width_bits"], SHIFT=int(haar["normalize"] == "per_level"), **common)
    n, cout, h, w = inv["shape"]
    inverse = dict(NC=n * cout, H=h, W=w, IN_W=st["zero_filled"]["width_bits"], REG_W=inv["width_bits"],
                   OUT_W=inv["width_bits"], DEFERRED=int(haar["normalize"] == "deferred"), **common)
    return {"tb_haar_fwd": {"params": fwd, "in": inp["file"], "expect": st["haar_coef"]["file"]},
            "tb_haar_inv": {"params": inverse, "in": st["zero_filled"]["file"], "expect": inv["file"]}}

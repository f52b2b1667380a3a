"""Fuzzing (issue #7): near-valid hardware YAML and trace members give either a valid result or the one-line
`InputError`, never another exception (warnings are errors under pytest) or a hang."""

import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "bad_inputs"))

from make_corpus import GOOD_HW_TEXT, write_good_trace  # noqa: E402
from wccsim.commands.trace import info_table  # noqa: E402
from wccsim.errors import InputError  # noqa: E402
from wccsim.hw import HwSpec, hw_from_dict, load_hw, schema_rows, spec_to_dict  # noqa: E402
from wccsim.runner import run  # noqa: E402
from wccsim.trace import open_trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# FUZZ_N=2000 runs a longer, randomized search; by default 60 derandomized examples per property.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_N", 60)), deadline=None, derandomize="FUZZ_N" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_TMP = tempfile.TemporaryDirectory()
TMP = Path(_TMP.name)
GOOD_TRACE = write_good_trace(TMP / "good.npz")
BASE = spec_to_dict(load_hw(ROOT / "hw_configs" / "edge_npu.yaml"))


def _assert_one_line(err: InputError, where: str) -> None:
    msg = str(err)
    assert "\n" not in msg and msg.startswith(where) and "expected" in msg, msg


# ------------------------------------------------------------------------------------------- YAML specs

def _paths(d: dict, prefix=()) -> list[tuple]:
    out = []
    for k, v in d.items():
        out.append(prefix + (k,))
        if isinstance(v, dict):
            out += _paths(v, prefix + (k,))
    return out


def _typo(key: str, i: int, kind: int) -> str:
    i %= max(len(key), 1)
    if kind == 0:
        return key[:i] + key[i + 1:] or "x"          # drop a character
    if kind == 1:
        return key[:i] + "z" + key[i:]                 # insert one
    return key[:i] + key[i + 1:i + 2] + key[i:i + 1] + key[i + 2:]  # swap two


def _in_range(typ: str, allowed: str):
    """Strategy for a valid value of a schema field (type and allowed values as in docs/hw_schema.md)."""
    if typ == "enum":
        return st.sampled_from([a.strip(" `") for a in allowed.split(",")])
    if typ == "str":
        return st.text(st.characters(codec="ascii", exclude_characters="\n\r"), min_size=1, max_size=64)
    lo, hi = (float(v) for v in allowed.split(".."))
    if typ == "int":
        return st.one_of(st.integers(int(lo), int(hi)), st.sampled_from([int(lo), int(hi)]))
    return st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi]))


# YAML key path -> strategy of valid values, from the schema the loader validates against.
VALID = {tuple(key.split(".")): _in_range(typ, allowed) for key, typ, _, _, allowed, _ in schema_rows()}

_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), st.integers(-10**30, 10**30), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "rows"]), st.integers(0, 3), max_size=2),
    st.sampled_from(["per_level", "exact", "saturate", "wrap", "floor", "tiled", "threshold", "l1", "linf"]),
)


@st.composite
def near_valid_specs(draw) -> dict:
    """The edge_npu spec with 1-3 mutations: delete a key, change a value (type or range), set a valid
    value (so valid but unusual configs reach the datapath), typo a key, add an unknown key."""
    spec = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(spec)))
        parent = spec
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.sampled_from(["delete", "value", "valid", "valid", "valid", "typo", "unknown"]))
        if op == "valid" and path in VALID:
            parent[key] = draw(VALID[path])
        elif op == "valid":
            continue
        elif op == "delete":
            del parent[key]
        elif op == "value":
            parent[key] = draw(_ODD_VALUES)
        elif op == "typo":
            new = _typo(key, draw(st.integers(0, 30)), draw(st.integers(0, 2)))
            parent[new] = parent.pop(key)
        else:
            parent[draw(st.sampled_from(["extra", "Rows", "bits", "size"]))] = draw(_ODD_VALUES)
        if not _paths(spec):
            break
    return spec


@FUZZ
@given(spec=near_valid_specs())
def test_near_valid_yaml_gives_a_spec_or_one_input_error(spec):
    path = TMP / "fuzz.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        hw = load_hw(path)
    except InputError as e:
        _assert_one_line(e, str(path))  # the path as given
        return
    assert isinstance(hw, HwSpec) and hw_from_dict(spec_to_dict(hw)) == hw  # a valid spec round-trips
    df = run(hw, GOOD_TRACE, rate=0.5, layers="conv1")  # ... and simulates: the loader refuses what cannot
    assert len(df) and df.cycles.ge(0).all()


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list(GOOD_HW_TEXT) + ["!", "&", "*", "\t", "\x00", "{", "[", "%"]),
                    max_size=6), pos=st.integers(0, len(GOOD_HW_TEXT)), cut=st.integers(0, 8))
def test_corrupted_yaml_text_gives_a_spec_or_one_input_error(text, pos, cut):
    path = TMP / "text.yaml"
    path.write_text(GOOD_HW_TEXT[:pos] + text + GOOD_HW_TEXT[pos + cut:])
    try:
        assert isinstance(load_hw(path), HwSpec)
    except InputError as e:
        _assert_one_line(e, str(path))  # the path as given


# ------------------------------------------------------------------------------------------ trace members

_GOOD_MEMBERS = {n: zipfile.ZipFile(GOOD_TRACE).read(n) for n in zipfile.ZipFile(GOOD_TRACE).namelist()}
_ARRAYS = {n[:-4]: np.load(io.BytesIO(b), allow_pickle=False) for n, b in _GOOD_MEMBERS.items() if n != "meta.npy"}
_DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "complex64", ">f4", "U3"]
_VALUES = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, 6.5e4, 3e38, -3e38, 1e300, 1e-300]


@st.composite
def mutated_members(draw) -> tuple[str, np.ndarray | bytes]:
    """One member of the good trace with a bad or unusual dtype, shape, or values (or garbage bytes)."""
    name = draw(st.sampled_from(sorted(_ARRAYS)))
    arr = _ARRAYS[name].copy()
    op = draw(st.sampled_from(["dtype", "shape", "values", "fill", "bytes"]))
    if op == "dtype":
        dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
        with np.errstate(invalid="ignore"):
            return name, (arr.astype(str).astype(dtype) if dtype.kind == "U" else arr.astype(dtype))
    if op == "shape":
        shape = list(arr.shape)
        i = draw(st.integers(0, len(shape)))
        kind = draw(st.sampled_from(["grow", "shrink", "zero", "drop", "add"]))
        if kind == "add" or not shape:
            shape.insert(i, draw(st.integers(0, 3)))
        elif kind == "drop":
            shape.pop(i % len(shape))
        else:
            shape[i % len(shape)] = {"grow": shape[i % len(shape)] + 1, "shrink": max(shape[i % len(shape)] - 1, 0),
                                     "zero": 0}[kind]
        return name, np.resize(arr, shape).astype(arr.dtype)
    if op == "values":
        flat = arr.astype(draw(st.sampled_from(["float16", "float32", "float64"]))).reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            with np.errstate(over="ignore"):  # 1e300 into float16 becomes inf, which is a case too
                flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(_VALUES))
        return name, flat.reshape(arr.shape)
    if op == "fill":  # degenerate but finite data: all zero, constant, all negative, huge
        return name, np.full_like(arr, draw(st.sampled_from([0.0, 1.0, -2.5, 1e30])))
    return name, draw(st.binary(max_size=200))


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    with np.errstate(all="ignore"):
        np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _run_members(members: dict) -> None:
    """Write `members` as a trace and run it: a table of every layer, or a one-line InputError."""
    path = TMP / "fuzz.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    try:
        text = info_table(open_trace(path))                                # wccsim trace info
        df = run(ROOT / "hw_configs" / "edge_npu.yaml", path, rate=0.5)    # wccsim run
    except InputError as e:
        _assert_one_line(e, str(path))
        return
    assert "conv0" in text and len(df) == 4 * len(open_trace(path).layers) and df.macs.gt(0).all()


@FUZZ
@given(mutation=mutated_members())
def test_mutated_trace_member_gives_a_table_or_one_input_error(mutation):
    name, value = mutation
    _run_members(dict(_GOOD_MEMBERS, **{f"{name}.npy": value if isinstance(value, bytes) else _npy(value)}))


_META = json.loads(str(np.load(io.BytesIO(_GOOD_MEMBERS["meta.npy"]), allow_pickle=False)[()]))


@FUZZ
@given(data=st.data())
def test_mutated_trace_meta_gives_a_table_or_one_input_error(data):
    meta = json.loads(json.dumps(_META))
    for _ in range(data.draw(st.integers(1, 2))):
        layers = meta.get("layers") if isinstance(meta.get("layers"), list) else []
        paths = _paths(meta) + [("layers", i, k) for i, layer in enumerate(layers)
                                if isinstance(layer, dict) for k in layer]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = meta
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(st.one_of(_ODD_VALUES, st.integers(0, 20), st.just(2**40)))
    _run_members(dict(_GOOD_MEMBERS, **{"meta.npy": _npy(np.array(json.dumps(meta)))}))


# -------------------------------------------------------------------------------------------- CLI options

_GOOD_HW = TMP / "good.yaml"
_GOOD_HW.write_text(GOOD_HW_TEXT)
_OPTION_TEXT = st.one_of(
    st.sampled_from(["0", "1", "0.5", "1e-9", "-1", "nan", "inf", "1e400", "2", "16", "17", "8", "0x10", "", " ",
                     "conv*", "conv1", "[", "*", "max", "mse", "percentile", "csv", "json", "table", "--rate"]),
    st.text(max_size=6))


@FUZZ
@given(opts=st.lists(st.tuples(st.sampled_from(["--rate", "--act-bits", "--weight-bits", "--layers", "--calib",
                                                "--format", "--bogus"]), _OPTION_TEXT), max_size=3),
       drop=st.sampled_from([None, "--hw", "--trace"]))
def test_run_options_give_exit_0_or_one_line_exit_2(opts, drop):
    import contextlib

    from wccsim.cli import main

    base = {"--hw": str(_GOOD_HW), "--trace": str(GOOD_TRACE), "--out": str(TMP / "cli_out")}
    argv = ["run"] + [a for k, v in base.items() if k != drop for a in (k, v)]
    argv += [a for k, v in opts for a in (k, v) if not (k == "--rate" and v == "--rate")]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    assert rc in (0, 2), err.getvalue()
    if rc == 2:
        assert err.getvalue().startswith("wccsim: error: ") and err.getvalue().count("\n") == 1, err.getvalue()

"""Generate the bad-input corpus of issue #7 into a directory (nothing opaque is checked in).

Every case is a `Case`: a few files written by this script (from one small valid trace and one valid
hardware YAML, also written here) plus the ``wccsim`` command line that must refuse them with exit
status 2 and one line on stderr containing every string of ``expect`` (the file, the member or field,
and what was found). ``make_valid`` writes the positive cases (float16 and float64 traces) that must run.

Usage: ``python tests/bad_inputs/make_corpus.py DIR`` writes the files and prints one line per case;
tests call `make_corpus(tmp_path)` directly.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from wccsim.trace import LayerData, write_trace

__all__ = ["Case", "OUT", "make_corpus", "make_valid", "write_good_trace", "write_good_hw", "GOOD_HW_TEXT"]

OUT = "{out}"  # placeholder in Case.argv for the output directory chosen by the test

GOOD_HW_TEXT = """\
name: corpus_npu
clock_mhz: 800
quant:
  act_bits: 8
  weight_bits: 8
haar:
  levels: 3
  width_bits: 16
mac:
  rows: 16
  cols: 16
  acc_bits: 32
sram:
  ifmap: {size_bytes: 65536}
  weight: {size_bytes: 65536}
  ofmap: {size_bytes: 65536}
"""


@dataclass(frozen=True)
class Case:
    """One bad input: its id, the wccsim argv (``OUT`` stands for the output directory) and the strings
    the one-line error message must contain."""

    name: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]

    def command(self, out: Path) -> list[str]:
        """argv with the output directory filled in."""
        return [a.replace(OUT, str(out)) for a in self.argv]


# ------------------------------------------------------------------------------------------ base files

def _layers(dtype=np.float32, seed: int = 0) -> list[LayerData]:
    """Two small post-ReLU 1x1 layers (odd spatial sizes, one with a bias), outputs computed in float64."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (cin, cout, h, w) in enumerate([(4, 6, 9, 12), (6, 5, 8, 7)]):
        x = np.maximum(rng.normal(size=(1, cin, h, w)), 0).astype(dtype)
        wt = rng.normal(size=(cout, cin)).astype(dtype)
        b = rng.normal(size=cout).astype(dtype) if i == 0 else None
        y = np.einsum("oc,nchw->nohw", wt.astype(np.float64), x.astype(np.float64))
        if b is not None:
            y = y + b.astype(np.float64)[None, :, None, None]
        out.append(LayerData(f"conv{i}", x, wt, b, y.astype(dtype), 1))
    return out


def write_good_trace(path: Path, store_dtype: str = "float32") -> Path:
    """A valid two-layer trace (conv0 with bias, conv1 without)."""
    dtype = {"float16": np.float16, "float32": np.float32, "float64": np.float64}[store_dtype]
    write_trace(path, {"network": "corpus", "source": {"tool": "make_corpus"}}, _layers(dtype),
                store_dtype=store_dtype)
    return path


def write_good_hw(path: Path) -> Path:
    path.write_text(GOOD_HW_TEXT)
    return path


def _npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _meta(members: dict[str, bytes]) -> dict:
    return json.loads(str(np.load(io.BytesIO(members["meta.npy"]), allow_pickle=False)[()]))


def _array(members: dict[str, bytes], name: str) -> np.ndarray:
    return np.load(io.BytesIO(members[name + ".npy"]), allow_pickle=False)


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def _variant(good: Path, path: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy of the good trace with its members edited in place by `edit`."""
    members = _members(good)
    edit(members)
    return _write_zip(path, members)


def _set_meta(fn: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def edit(members):
        meta = _meta(members)
        fn(meta)
        members["meta.npy"] = _npy(np.array(json.dumps(meta)))
    return edit


def _set_member(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, bytes]], None]:
    def edit(members):
        members[name + ".npy"] = _npy(fn(_array(members, name)))
    return edit


def _poke(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def fn(a):
        a = a.copy()
        a.reshape(-1)[a.size // 2] = value
        return a
    return fn


def _layer0(key: str, value) -> Callable[[dict], None]:
    def fn(meta):
        meta["layers"][0][key] = value
    return fn


# ---------------------------------------------------------------------------------------------- traces

def _trace_cases(d: Path, good: Path, hw: Path) -> list[Case]:
    cases = []

    def add(name: str, make: Callable[[Path], Path], *expect: str, field: bool = True) -> None:
        path = make(d / f"{name}.npz")
        cases.append(Case(f"trace/{name}", ("run", "--hw", str(hw), "--trace", str(path), "--out", OUT),
                          (path.name, *expect)))

    data = good.read_bytes()
    add("truncated_zip", lambda p: (p.write_bytes(data[: len(data) // 2]), p)[1], "truncated")
    add("not_a_zip", lambda p: (p.write_text("this is a text file, not a trace\n"), p)[1], "zip")
    add("empty_file", lambda p: (p.write_bytes(b""), p)[1], "zip")
    add("pickled_object_member", lambda p: _variant(good, p, lambda m: m.update(
        {"conv0.x.npy": _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)})),
        "conv0.x", "pickled", "object")
    add("missing_meta", lambda p: _variant(good, p, lambda m: m.pop("meta.npy")), "meta", "missing")
    add("meta_not_json", lambda p: _variant(good, p, lambda m: m.update(
        {"meta.npy": _npy(np.array("{format: wccsim-trace, version 1"))})), "meta", "JSON")
    add("meta_not_a_string", lambda p: _variant(good, p, lambda m: m.update(
        {"meta.npy": _npy(np.zeros(3))})), "meta", "dtype float64")
    add("wrong_format", lambda p: _variant(good, p, _set_meta(lambda mt: mt.update(format="other-trace"))),
        "meta.format", "other-trace")
    add("wrong_version", lambda p: _variant(good, p, _set_meta(lambda mt: mt.update(version=2))),
        "meta.version", "got 2")
    add("layer_member_missing", lambda p: _variant(good, p, lambda m: m.pop("conv1.w.npy")),
        "conv1.w", "missing")
    add("bias_listed_but_missing", lambda p: _variant(good, p, lambda m: m.pop("conv0.b.npy")),
        "conv0.b", "missing")
    add("shape_disagrees_with_meta", lambda p: _variant(good, p, _set_meta(_layer0("h", 10))),
        "conv0.x", "shape (1, 4, 10, 12)", "shape (1, 4, 9, 12)")
    add("cin_of_w_not_matching_x", lambda p: _variant(good, p, _set_member(
        "conv0.w", lambda a: np.concatenate([a, a[:, :1]], axis=1))), "conv0.w", "shape (6, 4)", "shape (6, 5)")
    add("nan_in_activation", lambda p: _variant(good, p, _set_member("conv0.x", _poke(np.nan))),
        "conv0.x", "finite", "NaN")
    add("inf_in_activation", lambda p: _variant(good, p, _set_member("conv1.x", _poke(np.inf))),
        "conv1.x", "finite", "Inf")
    add("nan_in_weight", lambda p: _variant(good, p, _set_member("conv1.w", _poke(np.nan))),
        "conv1.w", "finite", "NaN")
    add("neg_inf_in_weight", lambda p: _variant(good, p, _set_member("conv0.w", _poke(-np.inf))),
        "conv0.w", "finite", "Inf")
    add("inf_in_bias", lambda p: _variant(good, p, _set_member("conv0.b", _poke(np.inf))),
        "conv0.b", "finite")
    add("integer_dtype", lambda p: _variant(good, p, _set_member("conv0.x", lambda a: a.astype(np.int32))),
        "conv0.x", "float16, float32 or float64", "int32")
    add("fortran_order", lambda p: _variant(good, p, _set_member(
        "conv0.w", lambda a: np.asfortranarray(a))), "conv0.w", "Fortran")

    def zero_size(m):
        _set_meta(_layer0("h", 0))(m)
        _set_member("conv0.x", lambda a: a[:, :, :0])(m)
        _set_member("conv0.y", lambda a: a[:, :, :0])(m)
    add("zero_size_spatial_dim", lambda p: _variant(good, p, zero_size), "meta.layers[0].h", "got 0")

    def ten_gb(m):  # meta and the .x header claim (1, 1024, 1280, 2048) float32 = 10 GiB; data is 1.7 kB
        _set_meta(lambda mt: mt["layers"][0].update(cin=1024, h=1280, w=2048))(m)
        hdr = {"descr": "<f4", "fortran_order": False, "shape": (1, 1024, 1280, 2048)}
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, hdr)
        m["conv0.x.npy"] = buf.getvalue() + m["conv0.x.npy"][128:]
    add("claims_10_gb", lambda p: _variant(good, p, ten_gb), "conv0.x")
    add("extra_member", lambda p: _variant(good, p, lambda m: m.update({"evil.npy": _npy(np.zeros(2))})),
        "evil.npy", "unexpected")
    add("duplicate_layer_name", lambda p: _variant(good, p, _set_meta(
        lambda mt: mt["layers"][1].update(name="conv0"))), "meta.layers[1].name", "'conv0'")
    add("batch_size_zero", lambda p: _variant(good, p, _set_meta(lambda mt: mt.update(n=0))), "meta.n", "got 0")
    add("layers_not_a_list", lambda p: _variant(good, p, _set_meta(lambda mt: mt.update(layers={"a": 1}))),
        "meta.layers")
    add("source_not_an_object", lambda p: _variant(good, p, _set_meta(lambda mt: mt.update(source=None))),
        "meta.source", "an object", "None")
    add("stride_not_an_int", lambda p: _variant(good, p, _set_meta(_layer0("stride", "2"))),
        "meta.layers[0].stride", "'2'")
    path = d / "trace_is_a_directory.npz"
    path.mkdir()
    cases.append(Case("trace/is_a_directory", ("run", "--hw", str(hw), "--trace", str(path), "--out", OUT),
                      (path.name, "a directory")))
    info = d / "source_not_an_object.npz"
    cases.append(Case("trace/info_source_not_an_object", ("trace", "info", str(info)), (info.name, "meta.source")))
    info = d / "info_truncated.npz"
    info.write_bytes(data[: len(data) // 3])
    cases.append(Case("trace/info_truncated", ("trace", "info", str(info)), (info.name, "truncated")))
    return cases


# ------------------------------------------------------------------------------------------------ YAML

_HW_EDITS = {  # name: (replace this text of GOOD_HW_TEXT, by this; strings the message must contain)
    "unknown_key": ("clock_mhz: 800\n", "clock_mhz: 800\nturbo: true\n", ("turbo", "unknown key")),
    "misspelled_key": ("  rows: 16", "  rowz: 16", ("mac.rowz", "did you mean 'rows'")),
    "misspelled_section": ("haar:", "har:", ("har", "did you mean 'haar'")),
    "negative_size": ("ifmap: {size_bytes: 65536}", "ifmap: {size_bytes: -4}",
                      ("sram.ifmap.size_bytes", "got -4")),
    "zero_size": ("  cols: 16", "  cols: 0", ("mac.cols", "positive integer", "got 0")),
    "act_bits_1": ("  act_bits: 8", "  act_bits: 1", ("quant.act_bits", "[2, 16]", "got 1")),
    "weight_bits_17": ("  weight_bits: 8", "  weight_bits: 17", ("quant.weight_bits", "[2, 16]", "got 17")),
    "acc_narrower_than_product": ("  acc_bits: 32", "  acc_bits: 12", ("mac.acc_bits", "16", "got 12")),
    "acc_plus_haar_growth_over_60": ("  acc_bits: 32", "  acc_bits: 58", ("mac.acc_bits", "at most 57", "got 58")),
    "haar_width_61": ("  width_bits: 16", "  width_bits: 61", ("haar.width_bits", "got 61")),
    "python_tag": ("name: corpus_npu", "name: !!python/object/apply:os.system ['true']", ("tag", "line 1")),
    "python_object_tag": ("  ifmap: {size_bytes: 65536}", "  ifmap: !!python/object:collections.OrderedDict {}",
                          ("tag", "line")),
    "huge_integer": ("ifmap: {size_bytes: 65536}", "ifmap: {size_bytes: 1000000000000000000000000000000}",
                     ("sram.ifmap.size_bytes", "1e+30")),
    "huge_float": ("clock_mhz: 800", "clock_mhz: 1.0e+400", ("clock_mhz", "inf")),
    "string_for_int": ("  rows: 16", "  rows: sixteen", ("mac.rows", "'sixteen'")),
    "bool_for_int": ("  rows: 16", "  rows: true", ("mac.rows", "True")),
    "bad_enum": ("  acc_bits: 32", "  acc_bits: 32\n  dataflow: row_stationary",
                 ("mac.dataflow", "weight_stationary", "'row_stationary'")),
    "syntax_error": ("  rows: 16", "  rows: [16", ("valid YAML", "line")),
    "missing_required": ("name: corpus_npu\n", "", ("name", "required")),
    "section_not_a_mapping": ("haar:\n  levels: 3\n  width_bits: 16\n", "haar: 3\n", ("haar", "mapping")),
}


def _hw_cases(d: Path, trace: Path) -> list[Case]:
    cases = []

    def add(name: str, path: Path, expect: tuple[str, ...]) -> None:
        cases.append(Case(f"hw/{name}", ("run", "--hw", str(path), "--trace", str(trace), "--out", OUT),
                          (path.name, *expect)))

    for name, (old, new, expect) in _HW_EDITS.items():
        assert old in GOOD_HW_TEXT, name
        path = d / f"{name}.yaml"
        path.write_text(GOOD_HW_TEXT.replace(old, new, 1))
        add(name, path, expect)
    (d / "empty.yaml").write_text("")
    add("empty_file", d / "empty.yaml", ("empty file",))
    (d / "top_level_list.yaml").write_text("- name: x\n- clock_mhz: 1\n")
    add("top_level_list", d / "top_level_list.yaml", ("mapping", "list"))
    (d / "not_utf8.yaml").write_bytes(b"name: \xff\xfe\n")
    add("not_utf8", d / "not_utf8.yaml", ("UTF-8",))
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (d / "billion_laughs.yaml").write_text(laughs)
    add("billion_laughs", d / "billion_laughs.yaml", ("unknown key",))
    (d / "hw_dir.yaml").mkdir()
    add("is_a_directory", d / "hw_dir.yaml", ("a directory",))
    return cases


# ------------------------------------------------------------------------------------------------- CLI

def _cli_cases(d: Path, trace: Path, hw: Path) -> list[Case]:
    t, h = str(trace), str(hw)
    run = ("run", "--hw", h, "--trace", t, "--out", OUT)
    blocker = d / "a_regular_file"
    blocker.write_text("not a directory\n")
    workload = d / "bad_workload.csv"
    workload.write_text("layer,x\nconv,1\n")
    good_workload = d / "workload.csv"
    good_workload.write_text("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\n"
                             "conv0,conv1x1,16,32,1,1,1,8,8,1,0\n")
    cases = [Case(f"cli/rate_{name}", (*run, "--rate", value), ("rate", *expect)) for name, value, expect in [
        ("zero", "0", ("(0, 1]", "got '0'")), ("above_one", "1.5", ("(0, 1]", "1.5")),
        ("negative", "-0.25", ("(0, 1]", "-0.25")), ("nan", "nan", ("(0, 1]", "nan")),
        ("inf", "inf", ("(0, 1]", "inf")), ("text", "half", ("expected a number", "half"))]]
    cases += [
        Case("cli/act_bits_1", (*run, "--act-bits", "1"), ("--act-bits", "2..16", "got '1'")),
        Case("cli/weight_bits_99", (*run, "--weight-bits", "99"), ("--weight-bits", "2..16", "got '99'")),
        Case("cli/missing_trace_option", ("run", "--hw", h, "--out", OUT), ("--trace", "required")),
        Case("cli/missing_hw_option", ("run", "--trace", t, "--out", OUT), ("--hw", "required")),
        Case("cli/missing_trace_file", ("run", "--hw", h, "--trace", str(d / "nope.npz"), "--out", OUT),
             ("nope.npz", "no such file")),
        Case("cli/unknown_option", (*run, "--turbo"), ("--turbo", "unrecognized")),
        Case("cli/unknown_calib", (*run, "--calib", "magic"), ("calib", "'magic'" if False else "magic")),
        Case("cli/unknown_layer_glob", (*run, "--layers", "fc*"), ("layers", "fc*")),
        Case("cli/out_parent_is_a_file", ("run", "--hw", h, "--trace", t, "--out", str(blocker / "sub")),
             (str(blocker), "directory")),
        Case("cli/out_is_a_file", ("run", "--hw", h, "--trace", t, "--out", str(blocker)),
             (str(blocker), "directory")),
        Case("cli/sweep_same_hw_twice", ("sweep", "--hw", h, "--hw", h, "--trace", t, "--out", OUT,
                                         "--rates", "0.5"), ("hw", "distinct")),
        Case("cli/sweep_jobs_and_scheduler", ("sweep", "--hw", h, "--trace", t, "--out", OUT, "--rates", "0.5",
                                              "--jobs", "2", "--scheduler", "tcp://127.0.0.1:9"),
             ("jobs", "scheduler")),
        Case("cli/sweep_jobs_zero", ("sweep", "--hw", h, "--trace", t, "--out", OUT, "--jobs", "0"),
             ("jobs", "positive")),
        Case("cli/vectors_rate_2", ("vectors", "--hw", h, "--trace", t, "--layer", "conv0", "--rate", "2",
                                    "--out", OUT), ("--rate", "(0, 1]", "got '2'")),
        Case("cli/vectors_unknown_layer", ("vectors", "--hw", h, "--trace", t, "--layer", "fc", "--out", OUT),
             (trace.name, "layer", "'fc'")),
        Case("cli/vectors_out_parent_is_a_file", ("vectors", "--hw", h, "--trace", t, "--layer", "conv0",
                                                  "--out", str(blocker / "sub")), (str(blocker), "directory")),
        Case("cli/cost_workload_bad_header", ("cost", "--hw", h, "--workload", str(workload), "--rate", "0.5"),
             (workload.name, "header", "layer,x")),
        Case("cli/cost_csv_parent_is_a_file", ("cost", "--hw", h, "--workload", str(good_workload), "--rate", "0.5",
                                               "--csv", str(blocker / "costs.csv")), (str(blocker), "directory")),
        Case("cli/report_missing_dir", ("report", str(d / "no_such_run")), ("no_such_run", "no such directory")),
        Case("cli/report_dir_without_results", ("report", OUT), ("layers.csv",)),
        Case("cli/sweep_out_parent_is_a_file", ("sweep", "--hw", h, "--trace", t, "--rates", "0.5",
                                                "--out", str(blocker / "sub")), (str(blocker), "directory")),
    ]
    return cases


def make_corpus(dest: Path) -> list[Case]:
    """Write every bad input (and the valid trace and YAML they derive from) under `dest`.

    Returns the cases in a fixed order; names are unique.
    """
    dest = Path(dest)
    for sub in ("traces", "hw", "cli"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    good = write_good_trace(dest / "good.npz")
    hw = write_good_hw(dest / "good.yaml")
    cases = _trace_cases(dest / "traces", good, hw) + _hw_cases(dest / "hw", good) + _cli_cases(dest / "cli", good, hw)
    assert len({c.name for c in cases}) == len(cases)
    return cases


def make_valid(dest: Path) -> list[Case]:
    """Positive cases: float64 and float16 traces run (exit 0) and say nothing on stderr."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    hw = write_good_hw(dest / "good.yaml")
    out = []
    for dtype in ("float16", "float32", "float64"):
        trace = write_good_trace(dest / f"{dtype}.npz", store_dtype=dtype)
        out.append(Case(f"valid/{dtype}", ("run", "--hw", str(hw), "--trace", str(trace), "--out", OUT), ()))
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs_out")
    for case in make_corpus(target):
        print(f"{case.name:40s} wccsim {' '.join(case.argv)}")

"""Issue #7: every bad input of the corpus (tests/bad_inputs/make_corpus.py) is refused with exit status 2,
one line on stderr naming the file and the member or field, no traceback, and an untouched output dir."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "bad_inputs"))

import wccsim.trace  # noqa: E402
from make_corpus import make_corpus, make_valid  # noqa: E402
from wccsim.cli import main  # noqa: E402

with tempfile.TemporaryDirectory() as _d:
    NAMES = [c.name for c in make_corpus(Path(_d))]

PREVIOUS = b"hw,layer,scheme\nprevious,results,kept\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    return root, {c.name: c for c in make_corpus(root)}


def snapshot(directory: Path) -> dict:
    """{relative path: bytes} of every file (and directory) below `directory`."""
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(directory.rglob("*"))}


def _out_with_previous_results(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "layers.csv").write_bytes(PREVIOUS)
    return out


def test_corpus_has_at_least_25_cases_of_each_promised_kind():
    assert len(NAMES) >= 25 and len(set(NAMES)) == len(NAMES)
    for kind, least in (("trace/", 15), ("hw/", 12), ("cli/", 10)):
        assert sum(n.startswith(kind) for n in NAMES) >= least, kind


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_exits_2_with_one_line_and_touches_nothing(corpus, tmp_path, capsys, name):
    root, cases = corpus
    case = cases[name]
    out = _out_with_previous_results(tmp_path)
    before_out, before_root = snapshot(out), snapshot(root)
    rc = main(case.command(out))
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, err
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in case.expect:
        assert text in err, f"{text!r} not in {err!r}"
    assert snapshot(out) == before_out          # pre-existing results byte-identical, nothing added
    assert snapshot(root) == before_root        # no stray file (temporaries, directories) beside the inputs


@pytest.mark.parametrize("name", ["trace/pickled_object_member", "hw/python_tag", "cli/out_parent_is_a_file"])
def test_real_process_exit_status_is_2_without_traceback(corpus, tmp_path, name):
    case = corpus[1][name]
    out = _out_with_previous_results(tmp_path)
    r = subprocess.run([sys.executable, "-m", "wccsim", *case.command(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and all(t in r.stderr for t in case.expect)
    assert snapshot(out) == {"layers.csv": PREVIOUS}


def test_debug_flag_shows_the_traceback(corpus, tmp_path, capsys):
    case = corpus[1]["trace/wrong_version"]
    assert main(["--debug", *case.command(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("wccsim: error: ")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float16_float32_float64_traces_run(tmp_path, capsys, dtype):
    import pandas as pd

    case = {c.name: c for c in make_valid(tmp_path / "in")}[f"valid/{dtype}"]
    out = tmp_path / "out"
    assert main(case.command(out)) == 0
    assert capsys.readouterr().err == ""
    df = pd.read_csv(out / "layers.csv")
    int8 = df[df.scheme == "int8"]
    assert len(int8) == 2 and (int8.sqnr_total_db > 25).all()   # int8 of a sensible float input: ~40 dB
    assert df.sqnr_total_db.notna().all() and (df.acc_overflows == 0).all()


def test_trace_larger_than_free_memory_is_refused_before_reading_data(corpus, tmp_path, capsys, monkeypatch):
    root, _ = corpus
    monkeypatch.setattr(wccsim.trace, "_available_memory_bytes", lambda: 1000)
    real_read = wccsim.trace._read_member

    def read_meta_only(zf, path, member, shape, meta=False):
        assert meta, f"array data of {member} read before the memory check"
        return real_read(zf, path, member, shape, meta)
    monkeypatch.setattr(wccsim.trace, "_read_member", read_meta_only)
    out = _out_with_previous_results(tmp_path)
    assert main(["run", "--hw", str(root / "good.yaml"), "--trace", str(root / "good.npz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "good.npz" in err and "meta.layers[conv0]" in err and "1000 free bytes" in err
    assert snapshot(out) == {"layers.csv": PREVIOUS}

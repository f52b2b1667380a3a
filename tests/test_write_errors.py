"""Issue 21: every OSError while writing results is one line on stderr naming the path and the system's
reason, exit status 2; commands refuse an unwritable output location before simulating anything.

Disk full and read-only file systems are real: a small tmpfs in a private mount namespace (`unshare -m`,
root only); every write site is also checked with an injected OSError, which runs anywhere."""

import errno
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wccsim.atomic
import wccsim.runner
import wccsim.sweeper
from test_run import HW, ROOT, snapshot, write_tiny_trace
from wccsim.cli import main
from wccsim.errors import InputError
from wccsim.sweeper import JOURNAL, Journal, sweep

BUNDLED = ROOT / "traces" / "ppocr_cls.npz"
GRID = ["--rates", "1,0.5,0.25", "--act-bits", "8,4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_trace(tmp_path_factory.mktemp("trace") / "tiny.npz")


def _private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True)
    return r.returncode == 0


needs_mounts = pytest.mark.skipif(not _private_mounts_work(),
                                  reason="needs a private mount namespace (`unshare -m`, root) for a small tmpfs")


def _in_namespace(script: str) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its mounts vanish with it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def _wccsim(*args) -> str:
    return shlex.join([sys.executable, "-m", "wccsim", *map(str, args)])


def _one_line_error(err: str, *words: str) -> None:
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def _status_lines(stdout: str) -> list[int]:
    return [int(line.split("=")[1]) for line in stdout.splitlines() if line.startswith("rc=")]


# ----------------------------------------------------------------------------- real file systems

@needs_mounts
def test_disk_full_during_run_is_one_line_naming_the_file(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = _in_namespace(f"mount -t tmpfs -o size=16k tmpfs {mnt} && "
                      f"{_wccsim('run', '--hw', HW, '--trace', BUNDLED, '--out', mnt / 'out')}")
    assert r.returncode == 2, r.stderr
    _one_line_error(r.stderr, str(mnt / "out"), "No space left on device (ENOSPC)")


@needs_mounts
def test_sweep_torn_by_a_full_disk_resumes_byte_identical(tiny, tmp_path):
    ref = tmp_path / "ref"
    assert main(["sweep", "--hw", str(HW), "--trace", str(tiny), "--out", str(ref), *GRID]) == 0
    mnt, copy = tmp_path / "mnt", tmp_path / "copy"
    mnt.mkdir()
    cmd = _wccsim("sweep", "--hw", HW, "--trace", tiny, "--out", mnt / "out", *GRID)
    r = _in_namespace(f"mount -t tmpfs -o size=64k tmpfs {mnt} && {cmd}; echo rc=$?; "
                      f"cp -a {mnt}/out {tmp_path}/torn; "                    # the state the full disk left
                      f"mount -o remount,size=4m tmpfs {mnt} && {cmd} >/dev/null; echo rc=$?; "
                      f"cp -a {mnt}/out {copy}")
    assert _status_lines(r.stdout) == [2, 0], r.stderr
    _one_line_error(r.stderr, str(mnt / "out" / JOURNAL), "No space left on device (ENOSPC)")
    torn = (tmp_path / "torn" / JOURNAL).read_bytes()
    assert 0 < torn.count(b"\n") < (ref / JOURNAL).read_bytes().count(b"\n")
    assert snapshot(copy) == snapshot(ref)


@needs_mounts
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_read_only_file_system_is_refused_before_any_work(command, tiny, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    hw = ["--hw", HW] if command == "run" else ["--hw", HW, *GRID]
    r = _in_namespace(f"mount -t tmpfs -o ro tmpfs {mnt} && "
                      f"{_wccsim(command, *hw, '--trace', tiny, '--out', mnt / 'out')}")
    assert r.returncode == 2, r.stderr
    _one_line_error(r.stderr, str(mnt), "Read-only file system (EROFS)")


@pytest.mark.parametrize("out", ["/proc", "/proc/wccsim-out", "/dev/full", "/dev/full/out"])
def test_run_refuses_an_unwritable_out_in_under_a_second_without_simulating(out, capsys, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("simulated before checking --out")
    monkeypatch.setattr(wccsim.runner, "run", fail)
    start = time.perf_counter()
    assert main(["run", "--hw", str(HW), "--trace", str(BUNDLED), "--out", out]) == 2
    assert time.perf_counter() - start < 1.0
    _one_line_error(capsys.readouterr().err, "/proc" if out.startswith("/proc") else "/dev/full")


def test_a_character_device_is_never_replaced(tmp_path, capsys):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        os.mkfifo(dev)  # not root: a FIFO is the special file we can make
    kind = os.lstat(dev).st_mode
    with pytest.raises(InputError, match=f"^{dev}: expected a regular file or a new file name, got a"):
        wccsim.atomic.write_text(dev, "x")
    assert main(["report", str(tmp_path), "-o", str(dev)]) == 2
    _one_line_error(capsys.readouterr().err, str(dev))
    assert os.lstat(dev).st_mode == kind


# --------------------------------------------------------------- each write site, injected OSError

def _raise(code: int):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR])
@pytest.mark.parametrize("site", ["os.replace", "os.fsync", "tempfile.mkstemp"])
def test_atomic_write_error_names_the_file_and_reason(site, code, tmp_path, monkeypatch):
    module, name = site.split(".")
    dest = tmp_path / "d" / "layers.csv"
    dest.parent.mkdir()
    dest.write_text("old")
    target = getattr(wccsim.atomic, module)
    real = getattr(target, name)
    if site == "tempfile.mkstemp":  # let ensure_dir's probe pass; fail the real write
        monkeypatch.setattr(target, name, lambda *a, **k: real(*a, **k) if "probe" in k.get("prefix", "")
                            else _raise(code)())
    else:
        monkeypatch.setattr(target, name, _raise(code))
    with pytest.raises(InputError) as e:
        wccsim.atomic.write_text(dest, "new")
    assert str(e.value) == f"{dest}: expected a writable location, got {os.strerror(code)} ({errno.errorcode[code]})"
    assert dest.read_text() == "old" and os.listdir(dest.parent) == ["layers.csv"]


@pytest.mark.parametrize("site", ["fsync", "open"])
def test_journal_append_error_names_the_journal(site, tmp_path, monkeypatch):
    journal = Journal(tmp_path / JOURNAL)
    if site == "open":
        monkeypatch.setattr("builtins.open", _raise(errno.EACCES))
    else:
        monkeypatch.setattr(wccsim.sweeper.os, "fsync", _raise(errno.ENOSPC))
    with pytest.raises(InputError, match=f"^{tmp_path / JOURNAL}: expected a writable location, got "):
        journal.append("k", [])
    journal.close()


def test_probe_failure_is_refused_before_the_sweep_locks_or_computes(tiny, tmp_path, monkeypatch):
    """`ensure_dir` tries to create a file (root passes `os.access` on a read-only mount)."""
    monkeypatch.setattr(wccsim.atomic.tempfile, "mkstemp", _raise(errno.EROFS))
    monkeypatch.setattr(wccsim.sweeper, "compute_point", _raise(errno.EIO))
    with pytest.raises(InputError, match="Read-only file system"):
        sweep(HW, tiny, tmp_path / "out", rates=[0.5])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["vectors", "--hw", str(HW), "--trace", str(BUNDLED), "--layer", "x", "--out", "/proc/wccsim-vectors"],
    ["network", "--onnx", "m.onnx", "--image", "skimage:text", "--hw", str(HW), "--rate", "0.5",
     "--out", "/proc/wccsim-network"],
    ["report", str(ROOT), "-o", "/proc/wccsim-report.html"],
], ids=["vectors", "network", "report"])
def test_commands_check_their_output_location_first(argv, capsys):
    assert main(argv) == 2  # the layer and model do not exist and ROOT is no run: only a first check names /proc
    _one_line_error(capsys.readouterr().err, "/proc")


def test_a_file_behind_a_symlink_in_the_way_is_named_as_what_it_is(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    for name, kind in (("link", "a regular file"), ("dangling", "a broken symlink")):
        assert main(["run", "--hw", str(HW), "--trace", str(BUNDLED), "--out", str(tmp_path / name / "out")]) == 2
        assert capsys.readouterr().err == (f"wccsim: error: {tmp_path / name}: expected an output directory (or a "
                                           f"path where one can be created), got {kind} in the way\n")

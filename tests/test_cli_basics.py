import subprocess
import sys

from wccsim import __version__
from wccsim.errors import InputError


def test_version_via_module():
    out = subprocess.run([sys.executable, "-m", "wccsim", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"wccsim {__version__}"


def test_input_error_is_one_line():
    e = InputError("edge_npu.yaml", "mac.rows", "a positive integer", -4)
    assert str(e) == "edge_npu.yaml: mac.rows: expected a positive integer, got -4"
    assert "\n" not in str(InputError("f", "x", "y", "multi\nline"))


def test_atomic_write_keeps_normal_permissions(tmp_path):
    import os
    import stat

    from wccsim.atomic import write_text

    dest = tmp_path / "out.csv"
    write_text(dest, "a\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask
    os.chmod(dest, 0o640)
    write_text(dest, "b\n")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640 and dest.read_text() == "b\n"


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    import pytest

    from wccsim.atomic import atomic_path

    dest = tmp_path / "keep.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]

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

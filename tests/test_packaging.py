"""What ``pip install fp8accel`` puts on a machine: one import root, ``fp8accel``, and the
``fp8accel`` command."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools is already here, and nothing is downloaded.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("fp8accel-*.whl")
    return path


def test_wheel_installs_only_fp8accel(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"fp8accel"}, sorted(tops)
    # fp8accel is a namespace package: hw, sim and synth are its subpackages.
    for module in ("fp8accel/hw/top.py", "fp8accel/hw/fp/adder.py", "fp8accel/sim/golden.py",
                   "fp8accel/sim/cli/__init__.py", "fp8accel/sim/tb/top.py",
                   "fp8accel/sim/pt/layers.py",
                   "fp8accel/synth/flow.py"):
        assert module in names, module
    assert not any(n.startswith("fp8accel/__init__") for n in names)
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_wheel_declares_the_command(wheel):
    with zipfile.ZipFile(wheel) as z:
        (entry,) = [n for n in z.namelist() if n.endswith("entry_points.txt")]
        text = z.read(entry).decode()
    assert "fp8accel = fp8accel.sim.cli:main" in text


def test_the_installed_package_imports_from_this_tree():
    import fp8accel.hw
    import fp8accel.sim.golden
    assert Path(fp8accel.hw.__file__).resolve().parent == ROOT / "hw"
    assert Path(fp8accel.sim.golden.__file__).resolve().parent == ROOT / "sim"

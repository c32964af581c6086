"""The arithmetic units as generated Verilog, under cocotb on Verilator and Icarus Verilog,
checked bit-exactly against sim.golden (testbench: sim/tb/units.py).

Each (simulator, unit configuration) pair builds in its own directory,
``build/cocotb/<sim>-<config>``, so ``pytest -n auto`` is safe and a rerun skips unchanged
builds. ``FP8ACCEL_COCOTB_VECTORS`` sets the number of operations per configuration on
Verilator (default 5000); Icarus runs a fifth as many.
"""

import importlib.util
import os

import pytest

from conftest import BUILD, simulator_cases
from fp8accel.sim.run.runner import have_simulator, run_cocotb
from fp8accel.sim.run.units import UnitSpec



def _spec(kind, **options):
    return UnitSpec(kind, options)


CONFIGS = [
    _spec("multiplier", a_fmt="e5m2", b_fmt="e5m2", out_fmt="dlfloat16"),
    _spec("multiplier", a_fmt="e4m3", b_fmt="e4m3", out_fmt="dlfloat16"),
    _spec("multiplier", a_fmt="e5m2", b_fmt="e4m3", out_fmt="binary16"),
    _spec("adder", fmt="dlfloat16", rounding="rne"),
    _spec("adder", fmt="dlfloat16", rounding="rna"),
    _spec("adder", fmt="dlfloat16", rounding="rtz"),
    _spec("adder", fmt="dlfloat16", rounding="sr"),
    _spec("adder", fmt="binary16", rounding="rne"),
    _spec("adder", fmt="binary16", rounding="rtz"),
    _spec("adder", fmt="bfloat16", rounding="sr"),
    _spec("adder", fmt="e5m2", rounding="rne"),
    _spec("fma", fmt="dlfloat16", rounding="rne"),
    _spec("fma", fmt="dlfloat16", rounding="sr"),
    _spec("fma", fmt="binary16", rounding="rne"),
    _spec("fma", fmt="binary16", rounding="rtz"),
    _spec("fma", fmt="binary32", rounding="rtz"),
    _spec("convert", in_fmt="dlfloat16", out_fmt="e5m2", rounding="rne", saturate=True),
    _spec("convert", in_fmt="dlfloat16", out_fmt="e5m2", rounding="rne", saturate=False),
    _spec("convert", in_fmt="dlfloat16", out_fmt="e4m3", rounding="sr"),
    _spec("convert", in_fmt="binary16", out_fmt="dlfloat16", rounding="rne"),
]

_MODULES = {"multiplier": "fp8accel.hw.fp.multiplier", "adder": "fp8accel.hw.fp.adder",
            "fma": "fp8accel.hw.fp.fma", "convert": "fp8accel.hw.fp.convert"}


def vectors(sim):
    """Operations per configuration in the back-to-back test (the idle-cycle test runs a
    quarter as many). Icarus interprets the design, several times slower than Verilator's
    compiled model, so it gets a fifth of the count: both take ~2 s per configuration."""
    count = int(os.environ.get("FP8ACCEL_COCOTB_VECTORS", 5000))
    return count if sim == "verilator" else max(1, count // 5)



def run_unit(sim, spec, *, count, seed=1, tag="", latency_offset=0):
    """Build ``spec`` for ``sim`` in ``build/cocotb/<sim>-<spec.name><tag>`` and run the
    testbench with ``count`` operations."""
    module = _MODULES[spec.kind]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet")
    unit = spec.build()
    widths = {".".join(map(str, path)): len(value)
              for path, _, value in unit.signature.flatten(unit)}
    config = {
        "unit": spec.to_json(),
        "latency": unit.latency + latency_offset,
        "widths": widths,
        "vectors": count,
        "idle_vectors": max(1, count // 4),
        "idle_pattern": [1, 0, 1, 1, 0, 0, 1, 0, 0, 0],
        "seed": seed,
    }
    return run_cocotb(unit, toplevel=spec.kind, test_module="fp8accel.sim.tb.units",
                      build_dir=BUILD / f"{sim}-{spec.name}{tag}", sim=sim, config=config)


#: The configurations the default tier builds for Verilator, one for each kind of unit (each build
#: takes about ten seconds); Icarus, whose builds take a second, runs them all, and the slow tier
#: runs every one on Verilator too.
VERILATOR_DEFAULT = {"multiplier-e5m2-e4m3-binary16", "fma-dlfloat16-sr",
                     "convert-dlfloat16-e4m3-sr"}


@pytest.mark.parametrize("sim, spec", simulator_cases(
    CONFIGS, name=lambda s: s.name,
    slow=lambda sim, s: sim == "verilator" and s.name not in VERILATOR_DEFAULT))
def test_unit_matches_golden(sim, spec):
    run_unit(sim, spec, count=vectors(sim))


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("spec", CONFIGS, ids=lambda s: s.name)
def test_unit_long_random_run(spec):
    run_unit("verilator", spec, count=20 * vectors("verilator"), seed=2, tag="-long")


@pytest.mark.icarus
def test_testbench_catches_a_wrong_latency():
    # The check must not be vacuous: sampling one cycle late pairs each result with the next
    # operation's operands, and nearly all of them must then be reported.
    spec = CONFIGS[0]
    with pytest.raises(AssertionError, match=r"2 of 2 cocotb tests failed on icarus(.|\n)*"
                                             r"differ from sim.golden in back-to-back"):
        run_unit("icarus", spec, count=200, tag="-late", latency_offset=1)


def test_unknown_simulator():
    with pytest.raises(ValueError, match=r"Unknown simulator 'xsim'; expected one of "
                                         r"verilator, icarus"):
        have_simulator("xsim")

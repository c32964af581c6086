"""The SGD weight-update unit as generated Verilog under cocotb on Verilator and Icarus Verilog
(testbench: sim/tb/update.py): a random vector with backpressure, bit-exact against
sim.golden.sgd_update, and the small-increment test of stochastic rounding.

Each configuration builds in its own directory, ``build/cocotb/<sim>-update<tag>``.
"""


import pytest

from conftest import BUILD, count_from_env, simulators
from fp8accel.hw.update import SGDUpdate
from fp8accel.sim.run.runner import run_cocotb





def run_update(sim, *, testcase, tag="", rbits=16, **config):
    unit = SGDUpdate(rbits=rbits)
    config = {"latency": unit.latency, "rbits": rbits, **config}
    return run_cocotb(unit, toplevel="sgd_update", test_module="fp8accel.sim.tb.update",
                      build_dir=BUILD / f"{sim}-update{tag}", sim=sim, config=config,
                      testcase=testcase)


# Icarus interprets the design, about 60 times slower than Verilator's compiled model here
# (2,700 against 170,000 cycles/s): it gets a smaller share of each test. On Verilator the
# small-increment test runs 48 weights x 3,000 sr steps (144,000 cycles, ~9 s, plus ~4 s for
# the golden model's 3,000 sequential calls) and 1,000 rne steps (~4 s): an rne weight that
# never moves in 1,000 steps shows the loss as well as in 10,000. The sr total must fall in
# a band of a few binomial standard deviations, relatively wider by sqrt(10/3) than with
# 10,000 steps (FP8ACCEL_UPDATE_STEPS sets the count).
VECTOR = {"verilator": 3000, "icarus": 400}
STEPS = {"verilator": (count_from_env("FP8ACCEL_UPDATE_STEPS", 3_000), 1_000),
         "icarus": (100, 100)}


@pytest.mark.parametrize("sim", simulators())
def test_random_vector_with_backpressure(sim):
    run_update(sim, testcase="test_random_vector_with_backpressure", vector=VECTOR[sim], seed=3)


@pytest.mark.parametrize("sim", simulators())
def test_small_increments_kept(sim):
    steps, rne_steps = STEPS[sim]
    run_update(sim, testcase="test_small_increments_kept", weights=48, steps=steps,
               rne_steps=rne_steps, seed=11)


@pytest.mark.verilator
@pytest.mark.slow
def test_random_vector_rbits4():
    run_update("verilator", testcase="test_random_vector_with_backpressure", tag="-r4", rbits=4,
               vector=1000, seed=4)


@pytest.mark.icarus
def test_testbench_catches_a_wrong_rbits():
    # Not vacuous: a unit built with 4 random bits differs from the golden model's 16-bit
    # rounding on many elements, and both tests must say so.
    unit = SGDUpdate(rbits=4)
    config = {"latency": unit.latency, "rbits": 16, "vector": 300, "weights": 48, "steps": 100,
              "seed": 5}
    with pytest.raises(AssertionError, match=r"2 of 2 cocotb tests failed on icarus(.|\n)*"
                                             r"differ from sim.golden.sgd_update"):
        run_cocotb(unit, toplevel="sgd_update", test_module="fp8accel.sim.tb.update",
                   build_dir=BUILD / "icarus-update-wrong-rbits", sim="icarus", config=config)

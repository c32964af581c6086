"""The accelerator top as Verilog under cocotb, driven through the host driver and checked
bit-exactly against fp8accel.sim.golden (testbench: sim/tb/top.py). The host driver's own checks
are in tests/test_host.py, the ``fp8accel gemm``, ``demo`` and ``update`` command line in
tests/test_cli_gemm.py.

Each (simulator, array) pair builds in its own directory, ``build/cocotb/top-<sim>-<R>x<C>``, so
``pytest -n auto`` is safe and a rerun skips unchanged builds. A first Verilator build of the top
takes 35-60 s (2x2 to 4x4, one core), most of this file's time; Icarus builds in a second but
simulates some 20 times slower, so it runs fewer and smaller cases and only the 2x2 and 2x3
arrays (the 4x4 on Icarus is in the slow tier). ``@pytest.mark.slow``: long random runs, the 8x8
build, a 256^3 GEMM and the demo.
"""

import json
from pathlib import Path

import pytest

from conftest import BUILD, simulator_cases
from fp8accel.hw.top import Accelerator
from fp8accel.sim.run.runner import run_cocotb


ARRAYS = [(2, 2), (4, 4), (2, 3)]
DEPTHS = [1024, 4096, 1024]
#: The stream width of each build: every width but 256 is covered by one of them.
STREAM_WIDTHS = {("verilator", 2, 2): 64, ("verilator", 4, 4): 64, ("verilator", 2, 3): 32,
                 ("icarus", 2, 2): 16, ("icarus", 4, 4): 64, ("icarus", 2, 3): 128}

#: What Icarus runs: every test once, the stream variants only plain and both at once.
ICARUS_TESTS = [
    "test_registers",
    "test_random_gemms/idle=False/backpressure=False",
    "test_random_gemms/idle=True/backpressure=True",
    "test_every_option/idle=False/backpressure=False",
    "test_back_to_back_commands/idle=False/backpressure=False",
    "test_bad_commands",
    "test_commands_queued_during_a_transfer",
    "test_error_log",
    "test_reset_in_the_middle",
    "test_update_matches_golden/idle=True/backpressure=True",
    "test_update_bad_commands",
    "test_update_scalars_latched_and_reset",
]


def tb_config(sim, rows, cols, build_dir, *, scale=1, seed=1):
    """The testbench configuration (see sim/tb/top.py). Verilator: random shapes up to three
    array heights of rows of A and K = 300 (150 passes on a 2-row array), the option sweep on
    K = 259 (past the largest chunk, 256; K = 67 with pauses). Icarus: the same tests on shapes
    a few times the array, the option sweep on K = 19 (chunks up to 16 split it)."""
    if sim == "verilator":
        cfg = {"random_cases": 4 * scale,
               "max_dims": [3 * rows * cols + 4, 4 * cols + 3, 300], "option_k": 259,
               "big": [max(4 * rows * cols, 48), 4 * cols, 8 * rows]}
    else:
        cfg = {"random_cases": 2 * scale, "max_dims": [2 * rows * cols + 1, 2 * cols + 1,
                                                        3 * rows + 2],
               "option_k": 19, "long_k": 4 * rows, "reset_k": 4 * rows + 1, "big": None,
               "update_lengths": [1, 3, 17, 40]}
    stats = Path(build_dir) / "stats.jsonl"
    stats.unlink(missing_ok=True)
    return {"rows": rows, "cols": cols, "depths": DEPTHS, "acc_fmt": "dlfloat16",
            "seed": seed, "stats": str(stats),
            "stream_width": STREAM_WIDTHS.get((sim, rows, cols), 64), **cfg}


def summarize(sim, rows, cols, results, cfg):
    """One line: GEMMs checked, build and run time, the utilization GEMM and the simulated
    cycles per second."""
    records = [json.loads(line) for line in Path(cfg["stats"]).read_text().splitlines()]
    gemms = [r for r in records if "m" in r]
    util = [r for r in gemms if r["test"] == "utilization"]
    speed = [r for r in records if r["test"] == "speed"]
    line = (f"{sim} {rows}x{cols}: {len(gemms)} GEMMs match sim.golden; build "
            f"{results.build_time:.1f} s, run {results.test_time:.1f} s")
    if util:
        u = util[0]
        line += (f"; {u['m']}x{u['k']}x{u['n']}: {u['cycles']} cycles, utilization "
                 f"{u['utilization']:.3f}")
    if speed:
        line += f"; {speed[0]['cycles_per_s']:.0f} simulated cycles/s"
    print(line)
    return line


def run_top(sim, rows, cols, cfg, build_dir, testcase=None, depths=None):
    depths = depths or cfg["depths"]
    top = Accelerator(rows, cols, a_depth=depths[0], b_depth=depths[1], acc_depth=depths[2],
                      stream_width=cfg.get("stream_width", 64))
    return run_cocotb(top, toplevel="top", test_module="fp8accel.sim.tb.top", build_dir=build_dir,
                      sim=sim, config={**cfg, "depths": list(depths)}, testcase=testcase)


#: The (simulator, shape) pairs of the slow tier: the default tier runs the 2x2 on Verilator
#: and the 2x3 on Icarus; the campaigns drive the 2x3 on both.
SLOW_TOPS = {("verilator", (4, 4)), ("verilator", (2, 3)), ("icarus", (2, 2))}


@pytest.mark.parametrize("sim, shape", simulator_cases(
    ARRAYS, name=lambda s: f"{s[0]}x{s[1]}", slow=lambda sim, s: (sim, s) in SLOW_TOPS))
def test_top_matches_golden(sim, shape):
    rows, cols = shape
    if sim == "icarus" and shape == (4, 4):
        pytest.skip("the 4x4 array on Icarus is in the slow tier (test_top_4x4_on_icarus)")
    build_dir = BUILD / f"top-{sim}-{rows}x{cols}"
    cfg = tb_config(sim, rows, cols, build_dir)
    results = run_top(sim, rows, cols, cfg, build_dir,
                      testcase=ICARUS_TESTS if sim == "icarus" else None)
    ran = {name for name, status, _ in results.tests if status == "passed"}
    assert len(ran) >= (len(ICARUS_TESTS) if sim == "icarus" else 23), results.tests
    summarize(sim, rows, cols, results, cfg)
    if sim == "verilator" and shape == (2, 2):
        # The checks are not vacuous: against a model without chunking, the option sweep
        # (chunk 2 on K = 259 already) must fail. Same build, so it costs one short run.
        cfg = {**cfg, "sabotage": True}
        with pytest.raises(AssertionError, match=r"1 of 1 cocotb tests failed(.|\n)*"
                                                 r"differ from sim.golden.gemm"):
            run_top(sim, rows, cols, cfg, build_dir,
                    testcase="test_every_option/idle=False/backpressure=False")
        # Likewise the weight update against the other rounding.
        with pytest.raises(AssertionError, match=r"1 of 1 cocotb tests failed(.|\n)*"
                                                 r"differ from sim.golden.sgd_update"):
            run_top(sim, rows, cols, cfg, build_dir,
                    testcase="test_update_matches_golden/idle=False/backpressure=False")


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("shape", ARRAYS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_top_long_random_run(shape):
    """Ten times the random GEMMs, on buffers four times the default (bigger shapes)."""
    rows, cols = shape
    build_dir = BUILD / f"top-verilator-{rows}x{cols}-long"
    cfg = tb_config("verilator", rows, cols, build_dir, scale=10, seed=2)
    cfg["max_dims"] = [8 * rows * cols + 3, 8 * cols + 1, 600]
    results = run_top("verilator", rows, cols, cfg, build_dir,
                      depths=[4 * d for d in DEPTHS])
    summarize("verilator", rows, cols, results, cfg)


@pytest.mark.icarus
@pytest.mark.slow
def test_top_4x4_on_icarus():
    build_dir = BUILD / "top-icarus-4x4"
    cfg = tb_config("icarus", 4, 4, build_dir)
    results = run_top("icarus", 4, 4, cfg, build_dir, testcase=ICARUS_TESTS)
    summarize("icarus", 4, 4, results, cfg)


@pytest.mark.verilator
@pytest.mark.slow
def test_top_8x8_build_time_and_speed():
    """The 8x8 top on Verilator: build time, a 128^3 GEMM's utilization, cycles/s."""
    build_dir = BUILD / "top-verilator-8x8"
    cfg = tb_config("verilator", 8, 8, build_dir)
    cfg["big"] = [128, 128, 128]
    depths = [4096, 16384, 4096]
    results = run_top("verilator", 8, 8, cfg, build_dir, depths=depths,
                      testcase=["test_registers", "test_utilization"])
    summarize("verilator", 8, 8, results, cfg)

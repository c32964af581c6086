"""cocotb tests of the accelerator behind the UART bridge (``hw.bridge.BridgedAccelerator``):
the unchanged host driver over :class:`sim.link.BridgeTransport` and cocotbext-uart, every
result checked bit-exactly against ``sim.golden``.

Ref: docs/host-interface.md, section "UART link".

The GEMM and UPDATE checks are those of ``sim/tb/top.py`` (its :class:`~sim.tb.top.Scoreboard`,
:func:`~sim.tb.top.check_update`, operand generators and ``"sabotage"`` switch), so a result
that differs from the golden model fails here exactly as it does on the top's own ports. The
rest speaks the byte protocol directly, through the link: an unknown command, the parser's
timeout, a reset while a frame streams out.

Configuration (``$FP8ACCEL_TB_CONFIG``, see :func:`sim.runner.run_cocotb`): that of
``sim/tb/top.py`` (``rows``, ``cols``, ``depths``, ``acc_fmt``, ``seed``, ``random_cases``,
``max_dims``, ``update_lengths``, ``sabotage``) and::

    {"divisor": 8,                    # clock cycles per bit of the build
     "fifo_depth": 64,                # its receive FIFO (blocks of fifo_depth // 4 beats)
     "timeout_cycles": 4096,          # its parser timeout
     "long_frame": [9, 13]}           # M, K of the GEMM whose A spans several blocks
"""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from fp8accel.hw.gearbox import pow2_at_least
from fp8accel.hw.top import ID_VALUE, Ctrl, Reg
from fp8accel.sim.host import AcceleratorError, AcceleratorHost, AcceleratorTimeout, Status
from fp8accel.sim.host.link import BridgeTransport, CocotbUartLink
from fp8accel.sim.tb.top import (
    Case,
    Scoreboard,
    check_update,
    expect_error,
    load_config,
    random_acc,
    random_case,
    random_fp8,
    run_case,
)

__all__ = ["start"]

PERIOD_NS = 10


def _config():
    cfg = load_config()
    cfg.setdefault("divisor", 8)
    cfg.setdefault("fifo_depth", 64)
    cfg.setdefault("timeout_cycles", 4096)
    cfg.setdefault("long_frame", [9, 13])
    return cfg


async def start(dut, cfg=None):
    """Start the clock, reset the design with ``rst``, attach the host over the UART and
    reset the accelerator through the bridge (``'Z'``, ``'I'``). Returns ``(host, link)``.
    ``cfg`` needs ``divisor`` and ``timeout_cycles`` (default: this module's configuration)."""
    cfg = cfg or _config()
    Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False)
    link = CocotbUartLink(dut, cfg["divisor"], PERIOD_NS)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    transport = BridgeTransport(link, clock_hz=1e9 / PERIOD_NS,
                                resync_cycles=cfg["timeout_cycles"])
    host = AcceleratorHost(transport)
    await host.reset()
    return host, link


def _byte_s(cfg):
    """Seconds of one byte on the line."""
    return 10 * cfg["divisor"] * PERIOD_NS * 1e-9


async def _silent(link, seconds, what):
    """Fail if anything arrives within ``seconds``."""
    try:
        got = await link.read(1, seconds)
    except AcceleratorTimeout:
        return
    raise AssertionError(f"{what}: the device sent {got!r}, expected silence")


@cocotb.test()
async def test_reset_and_config(dut):
    """'Z' and 'I' through the transport: BLOCK is fifo_depth // 4; ID, CONFIG and the
    capacities read over the link; registers written and read back; an unmapped address
    answers DECERR, which the transport raises."""
    cfg = _config()
    host, link = await start(dut)
    t = host.transport
    assert t.block == cfg["fifo_depth"] // 4, f"BLOCK {t.block}"
    assert await host.read_reg(Reg.ID) == ID_VALUE
    config = await host.config()
    assert (config["rows"], config["cols"]) == (cfg["rows"], cfg["cols"]), config
    assert [config["a_words"], config["b_bytes"], config["acc_words"]] == cfg["depths"], config
    assert await host.status() == Status(False, False, False, 0)
    assert config["beat_bytes"] == 2, config
    for reg, value in ((Reg.M, 0xBEEF), (Reg.K, 0xFFFF), (Reg.OPTIONS, 0x23BF3),
                       (Reg.SEED, 0xDEADBEEF), (Reg.LENGTH, 0x01000000)):
        await host.write_reg(reg, value)
        got = await host.read_reg(reg)
        assert got == value, f"register 0x{reg:02x}: 0x{got:x}, wrote 0x{value:x}"
    for call, what in ((t.read_reg(0x64), "read"), (t.write_reg(0xFC, 1), "write")):
        try:
            await call
        except AcceleratorError as exc:
            assert exc.name == "DECERR", f"{what} of an unmapped address: {exc}"
        else:
            raise AssertionError(f"{what} of an unmapped address: no DECERR")


@cocotb.test()
async def test_gemms(dut):
    """Random GEMMs (random shapes, formats, transposes, chunks, roundings, accumulation,
    output formats), then fixed ones: both operands transposed and E4M3 accumulating into a
    loaded C with an E4M3 result, and one whose A frame spans several blocks."""
    cfg = _config()
    host, link = await start(dut)
    board = Scoreboard(cfg, "bridge")
    rng = np.random.default_rng([cfg["seed"], 30])
    for i in range(cfg["random_cases"]):
        await run_case(host, board, random_case(rng, cfg), f"random case {i}")
    rows, cols = cfg["rows"], cfg["cols"]
    m, n, k = rows + 3, cols + 1, 2 * rows + 3
    fixed = Case(random_fp8(rng, (m, k), "e4m3"), random_fp8(rng, (k, n), "e4m3"),
                 random_acc(rng, (m, n), cfg["acc_fmt"]), a_fmt="e4m3", b_fmt="e4m3", chunk=4,
                 rounding="rna", transpose_a=True, transpose_b=True, out_fmt="e4m3")
    await run_case(host, board, fixed, "transposed, E4M3, accumulating")
    m, k = cfg["long_frame"]
    long = Case(random_fp8(rng, (m, k), "e5m2", specials=False),
                random_fp8(rng, (k, n), "e4m3", specials=False), b_fmt="e4m3", chunk=2)
    beats = m * -(-k // cfg["rows"]) * pow2_at_least(cfg["rows"]) // 2    # A, 16-bit beats
    assert beats > host.transport.block, "the long frame fits one block"
    await run_case(host, board, long, f"a frame of {beats} beats")


@cocotb.test()
async def test_update(dut):
    """UPDATE, its results streaming out while its operands stream in, against
    ``golden.sgd_update`` bit for bit, both roundings (``check_update`` of sim/tb/top.py)."""
    cfg = _config()
    host, link = await start(dut)
    rng = np.random.default_rng([cfg["seed"], 31])
    for n in cfg.get("update_lengths", [1, 7, 40]):
        for rounding in ("sr", "rne"):
            await check_update(host, rng, n, rounding, f"over the bridge, {n} elements")


@cocotb.test()
async def test_device_error(dut):
    """A GEMM with a zero dimension, set up with raw register writes, is AcceleratorError 1
    (ZERO_DIM) from the host; a rejected CTRL word is error 6; the next GEMM is right."""
    cfg = _config()
    host, link = await start(dut)
    board = Scoreboard(cfg, "bridge errors")
    rng = np.random.default_rng([cfg["seed"], 32])
    for reg, value in ((Reg.M, 3), (Reg.N, 0), (Reg.K, 5)):
        await host.write_reg(reg, value)
    await host.command(Ctrl.START)
    exc = await expect_error(host.wait_done("START"), 1, "START with N = 0")
    assert exc.name == "ZERO_DIM", exc
    await host.command(Ctrl.START | Ctrl.LOAD_A)
    await expect_error(host.wait_done("CTRL"), 6, "two action bits")
    case = Case(random_fp8(rng, (3, 5), "e5m2"), random_fp8(rng, (5, 2), "e5m2"))
    await run_case(host, board, case, "after the errors")


@cocotb.test()
async def test_unknown_command(dut):
    """Bytes that are no command are answered with '?' and the byte, and change nothing."""
    cfg = _config()
    host, link = await start(dut)
    for c in (b"Q", b"\x00", b"\xff", b"w", b"D"):
        await link.write(c)
        got = await link.read(2, 8 * _byte_s(cfg))
        assert got == b"?" + c, f"command {c!r}: answered {got!r}"
    assert await host.read_reg(Reg.ID) == ID_VALUE


@cocotb.test()
async def test_timeout_resynchronises(dut):
    """A truncated 'W' swallows a 'Z' as its data: silence. After timeout_cycles the parser
    has dropped the command (the register is unchanged) and answers again. A block whose beat
    the accelerator never takes (no load is running) is dropped the same way. And the
    transport's reset recovers from a command one byte short on its own."""
    cfg = _config()
    host, link = await start(dut)
    t = host.transport
    timeout = cfg["timeout_cycles"]
    await host.write_reg(Reg.M, 0x1234)
    await link.write(bytes([ord("W"), Reg.M, 0x78]) + b"Z")
    # Silent for a third of the timeout after the 'Z' has arrived.
    await _silent(link, 4 * _byte_s(cfg) + timeout // 3 * PERIOD_NS * 1e-9,
                  "'Z' inside a truncated 'W'")
    await t.wait_cycles(timeout)
    assert await host.read_reg(Reg.M) == 0x1234, "the truncated write reached the register"
    await link.write(b"Z")
    got = await link.read(1, 4 * _byte_s(cfg))
    assert got == b"z", f"'Z' after the timeout: {got!r}"

    # A beat that no load takes: no 'k'; after the timeout the bridge answers again.
    await link.write(b"S\x01\x00\x01\x34\x12")
    await _silent(link, 10 * _byte_s(cfg) + timeout // 2 * PERIOD_NS * 1e-9,
                  "a block when no load runs")
    await t.wait_cycles(timeout)
    await link.write(b"I")
    got = await link.read(5, 8 * _byte_s(cfg))
    assert got[:1] == b"i", f"'I' after a dropped block: {got!r}"

    # One byte short: the transport's first 'Z' completes the write ('w', dropped), and its
    # second, after timeout_cycles of silence, resets.
    await link.write(bytes([ord("W"), Reg.N, 1, 2, 3]))
    await link.source.wait()        # on the line before the reset drops what is unsent
    await host.reset()
    assert await host.status() == Status(False, False, False, 0)
    assert await host.read_reg(Reg.N) == 0, "N after the reset"


@cocotb.test()
async def test_reset_drops_a_frame_in_flight(dut):
    """'Z' while READ_C streams a result out: the beats on their way are dropped, the device
    is idle, and reading the result again (the accumulator memory keeps it) gives it whole."""
    cfg = _config()
    host, link = await start(dut)
    board = Scoreboard(cfg, "bridge reset")
    rng = np.random.default_rng([cfg["seed"], 33])
    m, n, k = 6, 5, 3
    case = Case(random_fp8(rng, (m, k), "e5m2"), random_fp8(rng, (k, n), "e5m2"))
    await run_case(host, board, case, "before the reset")
    await host.write_reg(Reg.OPTIONS, 0)
    await host.command(Ctrl.READ_C)
    await host.transport.wait_cycles(10 * 30 * cfg["divisor"])      # about ten beats out
    await host.reset()
    assert await host.status() == Status(False, False, False, 0)
    board.check(case, await host.read_c(m, n), what="read again after a reset")

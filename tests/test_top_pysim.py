"""The accelerator top's small build (the iCE40's: no weight-update unit, no FP8 output
converters, delay lines in block RAM) in Amaranth's simulator: CONFIG says what is missing,
the missing actions fail with their error codes, and GEMMs still run bit-exactly."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.top import Accelerator, Ctrl, Reg, TopError
from fp8accel.sim import golden
from fp8accel.sim.host import frames, options_word


async def axil_write(ctx, dut, addr, value):
    ctx.set(dut.s_axil.awaddr, addr)
    ctx.set(dut.s_axil.awvalid, 1)
    ctx.set(dut.s_axil.wdata, value)
    ctx.set(dut.s_axil.wstrb, 0xF)
    ctx.set(dut.s_axil.wvalid, 1)
    ctx.set(dut.s_axil.bready, 1)
    for _ in range(50):
        _, _, awready, wready, bvalid = await ctx.tick().sample(
            dut.s_axil.awready, dut.s_axil.wready, dut.s_axil.bvalid)
        if awready:
            ctx.set(dut.s_axil.awvalid, 0)
        if wready:
            ctx.set(dut.s_axil.wvalid, 0)
        if bvalid:
            ctx.set(dut.s_axil.bready, 0)
            return
    raise AssertionError(f"no write response for 0x{addr:02x}")


async def axil_read(ctx, dut, addr):
    ctx.set(dut.s_axil.araddr, addr)
    ctx.set(dut.s_axil.arvalid, 1)
    ctx.set(dut.s_axil.rready, 1)
    for _ in range(50):
        _, _, arready, rvalid, rdata = await ctx.tick().sample(
            dut.s_axil.arready, dut.s_axil.rvalid, dut.s_axil.rdata)
        if arready:
            ctx.set(dut.s_axil.arvalid, 0)
        if rvalid:
            ctx.set(dut.s_axil.rready, 0)
            return rdata
    raise AssertionError(f"no read response for 0x{addr:02x}")


def to_beats(data, width):
    n = width // 8
    return [int.from_bytes(data[i:i + n], "little") for i in range(0, len(data), n)]


async def send_frame(ctx, dut, beats):
    for i, beat in enumerate(beats):
        ctx.set(dut.s_axis.tdata, int(beat))
        ctx.set(dut.s_axis.tlast, int(i == len(beats) - 1))
        ctx.set(dut.s_axis.tvalid, 1)
        while True:
            _, _, ready = await ctx.tick().sample(dut.s_axis.tready)
            if ready:
                break
    ctx.set(dut.s_axis.tvalid, 0)


async def recv_frame(ctx, dut, limit=10_000):
    beats = []
    ctx.set(dut.m_axis.tready, 1)
    for _ in range(limit):
        _, _, valid, data, last = await ctx.tick().sample(
            dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tlast)
        if valid:
            beats.append(data)
            if last:
                ctx.set(dut.m_axis.tready, 0)
                return beats
    raise AssertionError("no tlast")


async def wait_done(ctx, dut):
    for _ in range(5000):
        status = await axil_read(ctx, dut, Reg.STATUS)
        if status & 2 and not status & 1:
            return status
    raise AssertionError("not done")


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("update", [False, True])
def test_config_says_whether_update_is_built(update):
    dut = Accelerator(1, 2, a_depth=16, b_depth=16, acc_depth=16, update=update)
    seen = {}

    async def bench(ctx):
        seen["config"] = await axil_read(ctx, dut, Reg.CONFIG)
        for addr, value in ((Reg.LENGTH, 4), (Reg.SEED, 1)):
            await axil_write(ctx, dut, addr, value)
        await axil_write(ctx, dut, Reg.CTRL, Ctrl.UPDATE)
        seen["status"] = await axil_read(ctx, dut, Reg.STATUS)

    run(dut, bench)
    assert seen["config"] & 0xFFFF == 1 | 2 << 8
    assert (seen["config"] >> 29) & 1 == int(not update)      # CONFIG[29]: no update unit
    code = (seen["status"] >> 8) & 0xFF
    if update:
        assert code == 0 and seen["status"] & 1      # busy: waiting for its operands
    else:
        assert code == TopError.NO_UPDATE and seen["status"] & 2 and not seen["status"] & 1


@pytest.mark.parametrize("ram", ["bram", "lutram"])
def test_small_build_gemm_matches_golden(ram):
    """The iCE40's build (no update unit, no FP8 converters, no time stamps; delay lines in
    block RAM), and the same array with delay lines in LUT RAM and the time stamps."""
    rng = np.random.default_rng(5)
    stamps = ram == "lutram"
    dut = Accelerator(2, 2, a_depth=32, b_depth=64, acc_depth=32, update=False, fp8_out=False,
                      ram=ram, stamps=stamps)
    M, K, N = 3, 7, 3
    A = golden.encode(rng.standard_normal((M, K)), "e5m2", saturate=True)
    B = golden.encode(rng.standard_normal((K, N)), "e4m3", saturate=True)
    got = {}

    async def bench(ctx):
        got["config"] = await axil_read(ctx, dut, Reg.CONFIG)
        for addr, value in ((Reg.M, M), (Reg.N, N), (Reg.K, K),
                            (Reg.OPTIONS, options_word(chunk=2, b_fmt="e4m3"))):
            await axil_write(ctx, dut, addr, value)
        for action, data in ((Ctrl.LOAD_A, frames.a_frame(A, 2)),
                             (Ctrl.LOAD_B, frames.b_frame(B))):
            await axil_write(ctx, dut, Reg.CTRL, action)
            await send_frame(ctx, dut, to_beats(data, dut.stream_width))
            await wait_done(ctx, dut)
        await axil_write(ctx, dut, Reg.CTRL, Ctrl.START)
        got["status"] = await wait_done(ctx, dut)
        await axil_write(ctx, dut, Reg.CTRL, Ctrl.READ_C)
        got["C"] = await recv_frame(ctx, dut)
        # READ_C in E5M2 needs the converters this build does not have.
        await axil_write(ctx, dut, Reg.OPTIONS, options_word(chunk=2, out_fmt="e5m2"))
        await axil_write(ctx, dut, Reg.CTRL, Ctrl.READ_C)
        got["fp8_status"] = await axil_read(ctx, dut, Reg.STATUS)
        got["stamps"] = [await axil_read(ctx, dut, r) for r in (Reg.FIRST_IN, Reg.LAST_OUT)]

    run(dut, bench)
    assert (got["config"] >> 30) & 1 == 1                     # CONFIG[30]: no FP8 output
    assert (got["config"] >> 31) & 1 == int(not stamps)       # CONFIG[31]: no time stamps
    first, last = got["stamps"]
    if stamps:
        # From the first beat of LOAD_A to the last of READ_C: at least the beats between
        # (A: 3 rows of 4 words of 2 bytes; B: 21 bytes; C: 6 words of 2 lanes; 8 per beat).
        assert last - first >= 3 + 3 + 3, got["stamps"]
    else:
        assert first == last == 0
    assert (got["status"] >> 8) & 0xFF == 0
    want = golden.gemm(A, B, "e5m2", "e4m3", chunk=2)
    data = b"".join(int(b).to_bytes(8, "little") for b in got["C"])
    assert np.array_equal(frames.c_from_frame(data, M, N, 2), want)
    assert (got["fp8_status"] >> 8) & 0xFF == TopError.NO_FP8_OUT

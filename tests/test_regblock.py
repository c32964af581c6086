"""hw.regblock: the AXI4-Lite rules of docs/host-interface.md on the register block alone:
stored registers, refused writes, the CTRL decision delay, constants, inputs, absent units and
the read that pops ERRLOG."""

from amaranth.sim import Simulator

from fp8accel.hw import regs
from fp8accel.hw.regblock import RegisterBlock, Resp
from fp8accel.hw.regs import Ctrl, Reg
from test_top_rules import read, write


async def ctrl_response_cycles(ctx, dut, value):
    """Write CTRL; the cycles from its handshake to its response."""
    for name, v in (("awaddr", Reg.CTRL), ("wdata", value), ("wstrb", 0b1111), ("awvalid", 1),
                    ("wvalid", 1), ("bready", 1)):
        ctx.set(getattr(dut.s_axil, name), v)
    await ctx.tick().until(dut.s_axil.awready)
    ctx.set(dut.s_axil.awvalid, 0)
    ctx.set(dut.s_axil.wvalid, 0)
    for cycle in range(1, 20):
        if ctx.get(dut.s_axil.bvalid):
            await ctx.tick()
            ctx.set(dut.s_axil.bready, 0)
            return cycle
        await ctx.tick()
    raise AssertionError("no response to CTRL")


def test_register_block_rules():
    dut = RegisterBlock(constants={"ID": regs.ID_VALUE, "CONFIG": 0x1234, "A_WORDS": 7,
                                   "B_BYTES": 8, "ACC_WORDS": 9, "BUILD": 0x4208},
                        absent={"stamps"}, decide_cycles=4)
    seen = {}

    pops = []
    pulses = {"judge": [], "decide": [], "bvalid": []}

    async def watch(ctx):
        cycle = 0
        async for _, _, popped, judge, decide, bvalid in ctx.tick().sample(
                dut.errlog_read, dut.judge, dut.decide, dut.s_axil.bvalid):
            pops.append(popped)
            for name, v in (("judge", judge), ("decide", decide), ("bvalid", bvalid)):
                if v:
                    pulses[name].append(cycle)
            cycle += 1

    async def bench(ctx):
        ctx.set(dut.status.as_value(), 0x602)
        ctx.set(dut.cycles, 1234)
        ctx.set(dut.clock, 99)          # an absent unit's register: reads 0
        ctx.set(dut.errlog.as_value(), 0x8005_0003)
        seen["m"] = await write(ctx, dut, Reg.M, 0x1234)
        seen["m_value"] = ctx.get(dut.m)
        seen["m_wide"] = await write(ctx, dut, Reg.M, 0x1_0000)
        seen["m_partial"] = await write(ctx, dut, Reg.M, 5, strb=0b0011)
        seen["m_after"] = await read(ctx, dut, Reg.M)
        seen["out_fmt_3"] = await write(ctx, dut, Reg.OPTIONS, 3 << 16)
        seen["ro"] = await write(ctx, dut, Reg.STATUS, 0)
        seen["unmapped_w"] = await write(ctx, dut, 0x80, 1)
        seen["unmapped_r"] = await read(ctx, dut, 0xF0)
        seen["ctrl_r"] = await read(ctx, dut, Reg.CTRL)
        seen["ctrl"] = await ctrl_response_cycles(ctx, dut, Ctrl.LOAD_B)
        seen["ctrl_bits"] = (ctx.get(dut.ctrl), ctx.get(dut.ctrl_single))
        seen["ctrl_two"] = await write(ctx, dut, Reg.CTRL, Ctrl.LOAD_B | Ctrl.START)
        seen["ctrl_two_bits"] = (ctx.get(dut.ctrl), ctx.get(dut.ctrl_single))
        seen["pops_before"] = sum(pops)
        for name in ("id", "a_words", "status", "cycles", "clock", "queue"):
            seen[name] = await read(ctx, dut, getattr(Reg, name.upper()))
        seen["pops_other"] = sum(pops)
        seen["errlog"] = await read(ctx, dut, Reg.ERRLOG)
        seen["pops"] = sum(pops)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(watch)
    sim.add_testbench(bench)
    sim.run()
    assert seen["m"] == Resp.OKAY and seen["m_value"] == 0x1234
    assert seen["m_wide"] == seen["m_partial"] == Resp.SLVERR
    assert seen["m_after"] == (0x1234, Resp.OKAY), "a refused write changed M"
    assert seen["out_fmt_3"] == seen["ro"] == Resp.SLVERR
    assert seen["unmapped_w"] == Resp.DECERR and seen["unmapped_r"][1] == Resp.DECERR
    assert seen["ctrl_r"] == (0, Resp.SLVERR)
    # The CTRL write is answered with its decision, four cycles after its handshake.
    assert seen["ctrl"] == 5, seen["ctrl"]
    # Each of the two CTRL writes has one judge cycle, then one decide cycle, then its response.
    assert len(pulses["judge"]) == len(pulses["decide"]) == 2, pulses
    for j, d in zip(pulses["judge"], pulses["decide"]):
        assert d == j + 1 and d + 1 in pulses["bvalid"] and d not in pulses["bvalid"], pulses
    assert seen["ctrl_bits"] == (Ctrl.LOAD_B, 1) and seen["ctrl_two_bits"][1] == 0
    assert seen["id"][0] == regs.ID_VALUE and seen["a_words"][0] == 7
    assert seen["status"][0] == 0x602 and seen["cycles"][0] == 1234
    assert seen["clock"] == (0, Resp.OKAY)
    assert seen["errlog"] == (0x8005_0003, Resp.OKAY)
    assert seen["pops_before"] == seen["pops_other"] == 0 and seen["pops"] == 1, seen

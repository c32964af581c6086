"""hw.regblock: the AXI4-Lite rules of docs/host-interface.md on the register block alone:
stored registers, refused writes, the CTRL decision delay, constants, inputs, absent units and
the read that pops ERRLOG."""

from amaranth.sim import Simulator

from fp8accel.hw import regs
from fp8accel.hw.regblock import RegisterBlock, Resp
from fp8accel.hw.regs import Ctrl, Reg


async def write(ctx, dut, addr, value, strb=0b1111):
    """Returns (BRESP, cycles from the request to the response)."""
    ctx.set(dut.s_axil.awaddr, addr)
    ctx.set(dut.s_axil.wdata, value)
    ctx.set(dut.s_axil.wstrb, strb)
    ctx.set(dut.s_axil.awvalid, 1)
    ctx.set(dut.s_axil.wvalid, 1)
    ctx.set(dut.s_axil.bready, 1)
    for cycle in range(40):
        _, _, aw, bvalid, bresp = await ctx.tick().sample(
            dut.s_axil.awready, dut.s_axil.bvalid, dut.s_axil.bresp)
        if aw:
            ctx.set(dut.s_axil.awvalid, 0)
            ctx.set(dut.s_axil.wvalid, 0)
        if bvalid:
            ctx.set(dut.s_axil.bready, 0)
            await ctx.tick()
            return int(bresp), cycle
    raise AssertionError(f"no write response for 0x{addr:02x}")


async def read(ctx, dut, addr):
    """Returns (RRESP, RDATA, whether a popped register's read strobe was seen)."""
    ctx.set(dut.s_axil.araddr, addr)
    ctx.set(dut.s_axil.arvalid, 1)
    ctx.set(dut.s_axil.rready, 1)
    popped = False
    for _ in range(40):
        popped |= bool(ctx.get(dut.errlog_read))
        _, _, ar, rvalid, rresp, rdata = await ctx.tick().sample(
            dut.s_axil.arready, dut.s_axil.rvalid, dut.s_axil.rresp, dut.s_axil.rdata)
        if ar:
            ctx.set(dut.s_axil.arvalid, 0)
        if rvalid:
            ctx.set(dut.s_axil.rready, 0)
            await ctx.tick()
            return int(rresp), int(rdata), popped
    raise AssertionError(f"no read response for 0x{addr:02x}")


def test_register_block_rules():
    dut = RegisterBlock(constants={"ID": regs.ID_VALUE, "CONFIG": 0x1234, "A_WORDS": 7,
                                   "B_BYTES": 8, "ACC_WORDS": 9, "BUILD": 0x4208},
                        absent={"stamps"}, decide_cycles=4)
    seen = {}

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
        seen["ctrl"] = await write(ctx, dut, Reg.CTRL, Ctrl.LOAD_B)
        seen["ctrl_bits"] = (ctx.get(dut.ctrl), ctx.get(dut.ctrl_single))
        seen["ctrl_two"] = await write(ctx, dut, Reg.CTRL, Ctrl.LOAD_B | Ctrl.START)
        seen["ctrl_two_bits"] = (ctx.get(dut.ctrl), ctx.get(dut.ctrl_single))
        seen["id"] = await read(ctx, dut, Reg.ID)
        seen["a_words"] = await read(ctx, dut, Reg.A_WORDS)
        seen["status"] = await read(ctx, dut, Reg.STATUS)
        seen["cycles"] = await read(ctx, dut, Reg.CYCLES)
        seen["clock"] = await read(ctx, dut, Reg.CLOCK)
        seen["errlog"] = await read(ctx, dut, Reg.ERRLOG)
        seen["queue"] = await read(ctx, dut, Reg.QUEUE)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    fast = seen["m"][1]
    assert seen["m"][0] == Resp.OKAY and seen["m_value"] == 0x1234
    assert seen["m_wide"][0] == seen["m_partial"][0] == Resp.SLVERR
    assert seen["m_after"][:2] == (Resp.OKAY, 0x1234), "a refused write changed M"
    assert seen["out_fmt_3"][0] == Resp.SLVERR
    assert seen["ro"][0] == Resp.SLVERR
    assert seen["unmapped_w"][0] == Resp.DECERR and seen["unmapped_r"][0] == Resp.DECERR
    assert seen["ctrl_r"][:2] == (Resp.SLVERR, 0)
    # The CTRL write is answered with its decision, four cycles after a plain write would be.
    assert seen["ctrl"][0] == Resp.OKAY and seen["ctrl"][1] == fast + 4, (seen["ctrl"], fast)
    assert seen["ctrl_bits"] == (Ctrl.LOAD_B, 1) and seen["ctrl_two_bits"][1] == 0
    assert seen["id"][1] == regs.ID_VALUE and seen["a_words"][1] == 7
    assert seen["status"][1] == 0x602 and seen["cycles"][1] == 1234
    assert seen["clock"][:2] == (Resp.OKAY, 0)
    assert seen["errlog"] == (Resp.OKAY, 0x8005_0003, True)
    assert seen["queue"][2] is False, "a read of QUEUE popped ERRLOG"

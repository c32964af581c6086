"""hw.readback: READ_C's words from a memory with the engine's read latency, converted and
packed into beats, under random sink stalls, against the bytes the host expects
(``frames.c_from_frame``) and ``golden.convert``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.fp.format import DLFLOAT16
from fp8accel.hw.gearbox import pow2_at_least
from fp8accel.hw.readback import READ_LATENCY, ReadBack
from fp8accel.hw.regs import OutFmt
from fp8accel.sim import golden
from fp8accel.sim.vectors import random_acc

CASES = [  # (cols, stream width, format, words)
    (2, 64, OutFmt.ACC, 17), (3, 64, OutFmt.E5M2, 9), (3, 16, OutFmt.E4M3, 6),
    (4, 128, OutFmt.ACC, 5), (1, 32, OutFmt.E5M2, 1), (8, 64, OutFmt.E4M3, 12),
]


@pytest.mark.parametrize("cols, width, fmt, words", CASES)
def test_read_back_matches_the_host_frames(cols, width, fmt, words):
    rng = np.random.default_rng(cols * 1000 + width + int(fmt))
    depth = 32
    lanes = random_acc(rng, (depth, cols), "dlfloat16")      # the memory: word x lane
    dut = ReadBack(DLFLOAT16, cols, depth, width)
    beat_bytes = width // 8
    got = bytearray()
    ends = []

    async def memory(ctx):
        # rdata follows raddr by READ_LATENCY cycles, as the engine's accumulator read.
        line = [0] * READ_LATENCY
        async for _, _, addr in ctx.tick().sample(dut.raddr):
            word = sum(int(lanes[addr % depth, c]) << (16 * c) for c in range(cols))
            line = line[1:] + [word]
            ctx.set(dut.rdata, line[0])

    async def bench(ctx):
        ctx.set(dut.fmt, fmt)
        await ctx.tick()
        ctx.set(dut.words, words)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.active, 1)
        for _ in range(2000):
            ready = int(rng.random() < 0.6)
            ctx.set(dut.m_axis.tready, ready)
            _, _, valid, data, keep, last = await ctx.tick().sample(
                dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tkeep, dut.m_axis.tlast)
            if valid and ready:
                b = int(data).to_bytes(beat_bytes, "little")
                n = bin(int(keep)).count("1") if last else beat_bytes
                got.extend(b[:n])
                if last:
                    ends.append(len(got))
                    break
        ctx.set(dut.active, 0)
        for _ in range(20):
            _, _, valid = await ctx.tick().sample(dut.m_axis.tvalid)
            assert not valid, "beats after the last"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(memory)
    sim.add_testbench(bench)
    sim.run()
    fp8 = fmt != OutFmt.ACC
    per = pow2_at_least(cols) * (1 if fp8 else 2)
    assert ends == [words * per], (ends, words * per)
    img = np.frombuffer(bytes(got), np.uint8 if fp8 else "<u2").reshape(words, -1)
    want = lanes[:words]
    if fp8:
        want = golden.convert(want, "dlfloat16", "e5m2" if fmt == OutFmt.E5M2 else "e4m3",
                              "rne", saturate=True)
    assert np.array_equal(img[:, :cols], want), "lanes"
    assert not img[:, cols:].any(), "padding lanes"


def test_nothing_is_read_while_inactive():
    dut = ReadBack(DLFLOAT16, 2, 8, 64)

    async def bench(ctx):
        ctx.set(dut.words, 3)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.m_axis.tready, 1)
        for _ in range(30):
            _, _, valid, addr = await ctx.tick().sample(dut.m_axis.tvalid, dut.raddr)
            assert not valid and addr == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

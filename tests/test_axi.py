"""hw.axi.StreamSlice in Amaranth's simulator: random stalls on both sides, every beat out in
order and exactly once; a beat per cycle when neither side stalls; and its ``s.tready`` is a
register (a change of ``m.tready`` reaches it only after a clock edge)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.axi import StreamSlice


def run(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def beats_through(beats, p_offer, p_ready, seed, cycles):
    """Offer ``beats`` (``(tdata, tkeep, tlast)``) with probability ``p_offer`` per cycle while
    the sink is ready with probability ``p_ready``; returns what came out and the cycles it
    took to the last one."""
    dut = StreamSlice(32)
    rng = np.random.default_rng(seed)
    got = {"out": [], "last_cycle": None}

    async def bench(ctx):
        sent = 0
        offer = False
        for cycle in range(cycles):
            # AXI4-Stream: an offered beat stays offered until it is taken.
            if not offer and sent < len(beats):
                offer = rng.random() < p_offer
            ctx.set(dut.s.tvalid, offer)
            if offer:
                data, keep, last = beats[sent]
                ctx.set(dut.s.tdata, data)
                ctx.set(dut.s.tkeep, keep)
                ctx.set(dut.s.tlast, last)
            ready = rng.random() < p_ready
            ctx.set(dut.m.tready, ready)
            _, _, tready, tvalid, tdata, tkeep, tlast = await ctx.tick().sample(
                dut.s.tready, dut.m.tvalid, dut.m.tdata, dut.m.tkeep, dut.m.tlast)
            if offer and tready:
                sent += 1
                offer = False
            if tvalid and ready:
                got["out"].append((tdata, tkeep, tlast))
                if len(got["out"]) == len(beats):
                    got["last_cycle"] = cycle
        ctx.set(dut.s.tvalid, 0)

    run(dut, bench)
    return got


@pytest.mark.parametrize("seed", range(6))
def test_random_stalls_lose_and_repeat_nothing(seed):
    rng = np.random.default_rng(100 + seed)
    beats = [(int(rng.integers(0, 2**32)), int(rng.integers(0, 16)), int(rng.random() < 0.2))
             for _ in range(300)]
    p_offer, p_ready = [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (1.0, 0.5), (0.5, 1.0),
                        (0.8, 0.8)][seed]
    got = beats_through(beats, p_offer, p_ready, seed, cycles=3000)
    assert got["out"] == beats


def test_a_beat_per_cycle_without_stalls():
    beats = [(i * 0x01010101, 0xF, int(i % 7 == 6)) for i in range(200)]
    got = beats_through(beats, 1.0, 1.0, 0, cycles=260)
    assert got["out"] == beats
    # The first beat leaves a cycle after it enters; then one per cycle.
    assert got["last_cycle"] == len(beats)


def test_outputs_come_from_registers():
    """``s.tready`` and ``m.tvalid``/``m.tdata`` do not follow the other side's inputs until a
    clock edge: the slice breaks both handshake paths."""
    dut = StreamSlice(16)
    seen = []

    async def bench(ctx):
        ctx.set(dut.m.tready, 0)
        ctx.set(dut.s.tvalid, 1)
        ctx.set(dut.s.tdata, 0x1111)
        await ctx.tick()                       # beat 1 into the output register
        ctx.set(dut.s.tdata, 0x2222)
        await ctx.tick()                       # beat 2 into the skid register: full
        ctx.set(dut.s.tvalid, 0)
        seen.append((ctx.get(dut.s.tready), ctx.get(dut.m.tvalid), ctx.get(dut.m.tdata)))
        ctx.set(dut.m.tready, 1)               # the sink takes beat 1 ...
        ctx.set(dut.s.tdata, 0x3333)
        seen.append((ctx.get(dut.s.tready), ctx.get(dut.m.tvalid), ctx.get(dut.m.tdata)))
        await ctx.tick()                       # ... and beat 2 moves to the output
        seen.append((ctx.get(dut.s.tready), ctx.get(dut.m.tvalid), ctx.get(dut.m.tdata)))
        await ctx.tick()
        seen.append((ctx.get(dut.s.tready), ctx.get(dut.m.tvalid)))

    run(dut, bench)
    assert seen == [(0, 1, 0x1111), (0, 1, 0x1111), (1, 1, 0x2222), (1, 0)]

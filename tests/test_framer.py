"""hw.framer.UpdateFramer in Amaranth's simulator, against a stand-in update unit that answers
each element (w, g, v) with (w ^ g, v) after a random delay: frames of the right length, short
and long ones, with random stalls on both streams; the beats out, tlast, done and error are
checked exactly."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.framer import UpdateFramer


def run_frame(length, beats, seed):
    """Start a frame of ``length`` elements, offer ``beats`` (tlast on the last) and collect the
    output; returns ``(out_beats, out_lasts, error)``."""
    dut = UpdateFramer(pending=16)
    rng = np.random.default_rng(seed)
    got = {"out": [], "lasts": [], "done": False}

    async def unit(ctx):
        queue = []
        ctx.set(dut.elem.ready, 1)
        while not got["done"]:
            # Hand results back in order, some cycles after their elements.
            if queue and queue[0][0] <= 0 and rng.random() < 0.7:
                ctx.set(dut.result.valid, 1)
                ctx.set(dut.result.payload.w, queue[0][1])
                ctx.set(dut.result.payload.v, queue[0][2])
            else:
                ctx.set(dut.result.valid, 0)
            _, _, valid, payload, rvalid, rready = await ctx.tick().sample(
                dut.elem.valid, dut.elem.payload, dut.result.valid, dut.result.ready)
            for item in queue:
                item[0] -= 1
            if rvalid and rready:
                queue.pop(0)
            if valid:
                queue.append([int(rng.integers(0, 6)), payload.w ^ payload.g, payload.v])

    async def host(ctx):
        ctx.set(dut.length, length)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.active, 1)
        sent = 0
        for _ in range(20 * len(beats) + 200):
            offer = sent < len(beats) and rng.random() < 0.8
            ctx.set(dut.s_axis.tvalid, offer)
            if offer:
                ctx.set(dut.s_axis.tdata, beats[sent])
                ctx.set(dut.s_axis.tlast, sent == len(beats) - 1)
            ready = rng.random() < 0.7
            ctx.set(dut.m_axis.tready, ready)
            _, _, tready, tvalid, tdata, tlast, done, error = await ctx.tick().sample(
                dut.s_axis.tready, dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tlast,
                dut.done, dut.error)
            if offer and tready:
                sent += 1
            if tvalid and ready:
                got["out"].append(tdata)
                got["lasts"].append(tlast)
            if done:
                got["error"] = error
                got["done"] = True
                return
        raise AssertionError("the frame never ended")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(unit)
    sim.add_testbench(host)
    sim.run()
    return got["out"], got["lasts"], got["error"]


def elements(n, seed):
    rng = np.random.default_rng(seed)
    return [tuple(int(x) for x in rng.integers(0, 1 << 16, 3)) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 2, 7])
def test_a_frame_of_the_right_length(n):
    els = elements(n, n)
    out, lasts, error = run_frame(n, [x for e in els for x in e], seed=n)
    assert out == [x for w, g, v in els for x in (w ^ g, v)]
    assert lasts == [0] * (2 * n - 1) + [1] and not error


@pytest.mark.parametrize("n, cut", [(3, 7), (3, 6), (2, 1)], ids=["partial", "whole", "none"])
def test_a_short_frame_keeps_its_complete_elements(n, cut):
    els = elements(n, 10 + cut)
    beats = [x for e in els for x in e][:cut]
    out, lasts, error = run_frame(n, beats, seed=cut)
    done = cut // 3
    assert out == [x for w, g, v in els[:done] for x in (w ^ g, v)]
    assert lasts == ([0] * (2 * done - 1) + [1] if done else []) and error


def test_a_long_frame_is_cut_at_its_length():
    els = elements(4, 5)
    out, lasts, error = run_frame(3, [x for e in els for x in e], seed=5)
    assert out == [x for w, g, v in els[:3] for x in (w ^ g, v)]
    assert lasts == [0] * 5 + [1] and error

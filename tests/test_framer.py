"""hw.framer.UpdateFramer in Amaranth's simulator, against a stand-in update unit that answers
each element (w, g, v) with (w ^ g, v) after a random delay: frames of the right length, short
and long ones, with random stalls on both streams; the beats out, tlast, done and error are
checked exactly."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.framer import UpdateFramer


def run_frame(length, beats, seed, width=64):
    """Start a frame of ``length`` elements, offer ``beats`` (tlast on the last) and collect the
    output; returns ``(out_beats, out_lasts, error)``, each beat out as ``(tdata, tkeep)``."""
    dut = UpdateFramer(pending=16, beat_width=width)
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
            _, _, tready, tvalid, tdata, tkeep, tlast, done, error = await ctx.tick().sample(
                dut.s_axis.tready, dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tkeep,
                dut.m_axis.tlast, dut.done, dut.error)
            if offer and tready:
                sent += 1
            if tvalid and ready:
                got["out"].append((int(tdata), int(tkeep)))
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


def in_beats(els, width):
    """The frame of ``els``: 64 bits per element (w, g, v, and 16 ignored bits, here set),
    cut into beats."""
    raw = b"".join(w.to_bytes(2, "little") + g.to_bytes(2, "little") + v.to_bytes(2, "little")
                   + b"\xa5\x5a" for w, g, v in els)
    n = width // 8
    raw += bytes(-len(raw) % n)
    return [int.from_bytes(raw[i:i + n], "little") for i in range(0, len(raw), n)]


def results(out, width):
    """The 32-bit results carried by the kept bytes of the beats out."""
    raw = b""
    for data, keep in out:
        b = data.to_bytes(width // 8, "little")
        raw += bytes(b[i] for i in range(width // 8) if keep >> i & 1)
    assert len(raw) % 4 == 0
    return [(int.from_bytes(raw[i:i + 2], "little"), int.from_bytes(raw[i + 2:i + 4], "little"))
            for i in range(0, len(raw), 4)]


def lasts_of(count_beats):
    return [0] * (count_beats - 1) + [1] if count_beats else []


WIDTHS = [16, 32, 64, 128, 256]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n", [1, 2, 7])
def test_a_frame_of_the_right_length(n, width):
    els = elements(n, n)
    out, lasts, error = run_frame(n, in_beats(els, width), seed=n, width=width)
    assert results(out, width) == [(w ^ g, v) for w, g, v in els]
    assert lasts == lasts_of(-(-4 * n // (width // 8))) and not error


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n, cut", [(3, 2), (3, 1), (2, 0)], ids=["most", "one", "none"])
def test_a_short_frame_keeps_its_complete_elements(n, cut, width):
    """The frame ends after ``cut`` whole elements and half of the next (or, with beats of
    several elements, after the beats that carry ``cut`` elements and no more)."""
    els = elements(n, 10 + cut)
    full = in_beats(els, width)
    per = max(1, width // 64)           # elements per beat
    if width < 64:
        beats = full[:cut * 64 // width + 1]       # and part of the next element
        done = cut
    else:
        beats = full[:max(1, cut // per)]
        done = min(n, len(beats) * per)
        if len(beats) == len(full):
            pytest.skip("the frame's first beat holds every element")
    out, lasts, error = run_frame(n, beats, seed=cut, width=width)
    assert results(out, width) == [(w ^ g, v) for w, g, v in els[:done]]
    assert lasts == lasts_of(-(-4 * done // (width // 8))) and error


@pytest.mark.parametrize("width", WIDTHS)
def test_a_long_frame_is_cut_at_its_length(width):
    els = elements(9, 5)
    out, lasts, error = run_frame(3, in_beats(els, width), seed=5, width=width)
    assert results(out, width) == [(w ^ g, v) for w, g, v in els[:3]]
    assert lasts == lasts_of(-(-12 // (width // 8))) and error


@pytest.mark.parametrize("width, per_element", [(64, 1), (128, 1), (16, 4)])
def test_an_element_per_cycle(width, per_element):
    """With no stalls, a 64-bit (or wider) stream takes an element every cycle, and a 16-bit
    one every four: the frame of n elements ends within a few cycles of n * per_element."""
    n = 40
    dut = UpdateFramer(pending=16, beat_width=width)
    beats = in_beats(elements(n, 1), width)
    got = {}

    async def unit(ctx):
        ctx.set(dut.elem.ready, 1)
        ctx.set(dut.result.valid, 0)
        while True:
            _, _, valid, payload = await ctx.tick().sample(dut.elem.valid, dut.elem.payload)
            # A result for every element, the cycle after it was taken.
            ctx.set(dut.result.valid, valid)
            ctx.set(dut.result.payload.w, payload.w ^ payload.g)
            ctx.set(dut.result.payload.v, payload.v)

    async def host(ctx):
        ctx.set(dut.length, n)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.active, 1)
        ctx.set(dut.m_axis.tready, 1)
        sent = cycles = 0
        while True:
            if sent < len(beats):
                ctx.set(dut.s_axis.tvalid, 1)
                ctx.set(dut.s_axis.tdata, beats[sent])
                ctx.set(dut.s_axis.tlast, sent == len(beats) - 1)
            else:
                ctx.set(dut.s_axis.tvalid, 0)
            _, _, tready, done = await ctx.tick().sample(dut.s_axis.tready, dut.done)
            cycles += 1
            if sent < len(beats) and tready:
                sent += 1
            if done:
                got["cycles"] = cycles
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(unit, background=True)
    sim.add_testbench(host)
    sim.run()
    assert n * per_element <= got["cycles"] <= n * per_element + 8, got

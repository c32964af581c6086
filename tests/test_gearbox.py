"""hw.gearbox: beats to words and words to beats, every width pair, with random stalls on both
sides, against the byte stream they must carry."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.gearbox import Packer, Unpacker, pow2_at_least

PAIRS = [(16, 8), (16, 16), (16, 64), (64, 8), (64, 16), (64, 32), (64, 64), (64, 128),
         (32, 64), (128, 32), (256, 64), (64, 256)]


def test_pow2_at_least():
    assert [pow2_at_least(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


@pytest.mark.parametrize("bad", [0, 4, 12, 24, True, 64.0])
def test_widths_are_checked(bad):
    with pytest.raises(ValueError, match="power of two"):
        Unpacker(bad, 8)
    with pytest.raises(ValueError, match="power of two"):
        Packer(8, bad)


def _words(stream_bytes, width):
    n = width // 8
    return [int.from_bytes(stream_bytes[i:i + n], "little")
            for i in range(0, len(stream_bytes) - n + 1, n)]


@pytest.mark.parametrize("beat, word", PAIRS)
def test_unpacker_carries_the_byte_stream(beat, word):
    rng = np.random.default_rng(beat * 1000 + word)
    nbytes = max(beat, word) // 8 * 12
    payload = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    beats = _words(payload, beat)
    dut = Unpacker(beat, word)
    got = []

    async def source(ctx):
        for b in beats:
            ctx.set(dut.s_axis.tdata, b)
            ctx.set(dut.s_axis.tvalid, 1)
            await ctx.tick().until(dut.s_axis.tready)
            ctx.set(dut.s_axis.tvalid, 0)
            for _ in range(int(rng.integers(0, 3)) * int(rng.random() < 0.3)):
                await ctx.tick()

    async def sink(ctx):
        while len(got) < nbytes * 8 // word:
            ready = int(rng.random() < 0.7)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload_ = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append(int(payload_))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * 20 * len(beats) * max(1, beat // word) + 1e-6)
    assert got == _words(payload, word)


def test_unpacker_clear_drops_a_partial_word():
    dut = Unpacker(16, 64)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for b in (0x1111, 0x2222):           # half a word, then dropped
            ctx.set(dut.s_axis.tdata, b)
            ctx.set(dut.s_axis.tvalid, 1)
            await ctx.tick()
        ctx.set(dut.s_axis.tvalid, 0)
        assert ctx.get(dut.busy)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.busy)
        for b in (1, 2, 3, 4):
            ctx.set(dut.s_axis.tdata, b)
            ctx.set(dut.s_axis.tvalid, 1)
            await ctx.tick()
        ctx.set(dut.s_axis.tvalid, 0)
        _, _, valid, data = await ctx.tick().sample(dut.o.valid, dut.o.payload)
        got.append((valid, data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(1, 0x0004_0003_0002_0001)]


@pytest.mark.parametrize("word, beat", [(w, b) for b, w in PAIRS])
def test_packer_frames_words_into_beats(word, beat):
    rng = np.random.default_rng(beat * 7 + word)
    frames = [int(n) for n in rng.integers(1, 9, 6)] + [1]
    words = [(int.from_bytes(rng.bytes(word // 8), "little"), i == n - 1) for n in frames for i in range(n)]
    dut = Packer(word, beat)
    got = []

    async def source(ctx):
        for data, last in words:
            ctx.set(dut.i.payload, {"data": data, "last": last})
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            if rng.random() < 0.3:
                await ctx.tick()

    async def sink(ctx):
        while sum(1 for g in got if g[2]) < len(frames):
            ready = int(rng.random() < 0.7)
            ctx.set(dut.m_axis.tready, ready)
            _, _, valid, data, keep, last = await ctx.tick().sample(
                dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tkeep, dut.m_axis.tlast)
            if valid and ready:
                got.append((int(data), int(keep), int(last)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * 30 * len(words) * max(1, word // beat) + 1e-6)
    # Each frame's bytes, as the host reassembles them from the kept bytes.
    out, frame = [], b""
    for data, keep, last in got:
        raw = data.to_bytes(beat // 8, "little")
        kept = bytes(raw[i] for i in range(beat // 8) if keep >> i & 1)
        if word < beat:
            # Only the trailing bytes of a partial last beat may be left out.
            assert keep & (keep + 1) == 0 and keep
        else:
            assert keep == (1 << beat // 8) - 1
        frame += kept
        if last:
            out.append(frame)
            frame = b""
    want, pos = [], 0
    for n in frames:
        want.append(b"".join(d.to_bytes(word // 8, "little") for d, _ in words[pos:pos + n]))
        pos += n
    assert out == want

"""hw.loader: frames of beats into buffer words for every kind of load and stream width, with
random source stalls; frames of the right length, short and long."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.loader import FrameLoader, Load

CASES = [  # (stream width, (A, B, C word widths))
    (64, (16, 64, 64)), (16, (32, 16, 64)), (128, (8, 128, 256)), (32, (32, 32, 16)),
]


def _run(width, word_widths, kind, words, sent_words, seed):
    """Load ``words`` words of ``kind`` from a frame carrying ``sent_words`` words; returns
    (writes as (kind index, addr, data), bad, the cycle of the first beat flag count)."""
    rng = np.random.default_rng(seed)
    dut = FrameLoader(width, word_widths, 64)
    ww = word_widths[kind.value - 1]
    payload = [int(x) for x in rng.integers(0, 1 << min(ww, 62), sent_words)]
    data = b"".join(p.to_bytes(ww // 8, "little") for p in payload)
    nb = width // 8
    data += bytes(-len(data) % nb)
    beats = [int.from_bytes(data[i:i + nb], "little") for i in range(0, len(data), nb)]
    writes, result = [], {}

    async def bench(ctx):
        ctx.set(dut.start, 1)
        ctx.set(dut.start_kind, kind)
        ctx.set(dut.words, words)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.kind, kind)
        firsts = 0
        sent = 0
        for _ in range(4 * len(beats) + 100):
            offer = sent < len(beats) and rng.random() < 0.7
            ctx.set(dut.s_axis.tvalid, offer)
            if offer:
                ctx.set(dut.s_axis.tdata, beats[sent])
                ctx.set(dut.s_axis.tlast, sent == len(beats) - 1)
            _, _, ready, we, addr, word, end, bad, first = await ctx.tick().sample(
                dut.s_axis.tready, dut.we, dut.addr, dut.data, dut.end, dut.bad, dut.first)
            if offer and ready:
                sent += 1
            firsts += first
            for i in range(3):
                if we >> i & 1:
                    writes.append((i, int(addr), int(word) & ((1 << ww) - 1)))
            if end:
                result.update(bad=bool(bad), sent=sent, firsts=firsts)
                break
        ctx.set(dut.kind, 0)
        ctx.set(dut.s_axis.tvalid, 0)
        for _ in range(3):   # the last write is registered
            _, _, we, addr, word = await ctx.tick().sample(dut.we, dut.addr, dut.data)
            for i in range(3):
                if we >> i & 1:
                    writes.append((i, int(addr), int(word) & ((1 << ww) - 1)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return payload, writes, result, len(beats)


@pytest.mark.parametrize("width, word_widths", CASES)
@pytest.mark.parametrize("kind", list(Load))
@pytest.mark.parametrize("extra", [0, -1, 1, "beats"])
def test_frames_into_words(width, word_widths, kind, extra):
    ww = word_widths[kind.value - 1]
    words = 7 if ww < width else 5
    per_beat = max(1, width // ww)
    # Right, one word short, one word long, or a whole beat long (beats, not words, count).
    sent = {0: words, -1: words - 1, 1: words + 1, "beats": words + per_beat}[extra]
    payload, writes, result, nbeats = _run(width, word_widths, kind, words, sent,
                                           seed=width + kind.value * 7)
    assert result, "the load did not end"
    right_beats = -(-words * ww // width)
    assert result["bad"] == (nbeats != right_beats), (result, nbeats, right_beats)
    assert result["firsts"] == 1
    # Every whole word that came is written, up to the load's words (a partial last beat
    # carries zero words after the frame's).
    kept = min(words, nbeats * width // ww)
    full = payload + [0] * kept
    assert writes == [(kind.value - 1, a, full[a]) for a in range(kept)], writes

"""hw.gemm.writeback: every output row of the array to its accumulator word, chunk and total
packed per lane, and one end pulse after the last; with random gaps between the rows, and
the cycle between passes that the streamer always leaves."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.gemm.writeback import Writeback


@pytest.mark.parametrize("cols,M,NT,KB", [(2, 3, 2, 3), (1, 1, 1, 1), (4, 1, 3, 2),
                                          (3, 5, 1, 4), (2, 2, 4, 1)])
def test_rows_to_their_words(cols, M, NT, KB):
    rng = np.random.default_rng(M * 100 + NT * 10 + KB)
    dut = Writeback(cols, acc_depth=M * NT)
    rows = [(int.from_bytes(rng.bytes(2 * cols), "little"),
             int.from_bytes(rng.bytes(2 * cols), "little")) for _ in range(M * NT * KB)]
    want = []
    n = 0
    for _p in range(KB):
        for nt in range(NT):
            for i in range(M):
                chunk, total = rows[n]
                n += 1
                data = 0
                for c in range(cols):
                    data |= ((chunk >> 16 * c & 0xFFFF) | (total >> 16 * c & 0xFFFF) << 16) \
                        << (32 * c)
                want.append((i * NT + nt, data))
    got, ends = [], []

    async def bench(ctx):
        for name, v in (("m", M), ("nt", NT), ("kb", KB)):
            ctx.set(getattr(dut, name), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        sent = 0
        for cycle in range(4 * len(rows) + 20):
            # The streamer leaves a cycle between passes.
            gap = sent % M == 0 and ctx.get(dut.valid)
            give = sent < len(rows) and rng.random() < 0.6 and not gap
            ctx.set(dut.valid, give)
            if give:
                ctx.set(dut.chunk, rows[sent][0])
                ctx.set(dut.total, rows[sent][1])
                sent += 1
            _, _, we, addr, data, end = await ctx.tick().sample(dut.we, dut.addr, dut.data,
                                                                 dut.end)
            if we:
                got.append((int(addr), int(data), cycle))
            if end:
                ends.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [(a, d) for a, d, _ in got] == want
    assert ends == [got[-1][2] + 1], (ends, got[-1])

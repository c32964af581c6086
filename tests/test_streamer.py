"""hw.gemm.streamer: the rows of A of every pass, in round order, with their accumulator
words, row flags and banks; passes only when the weights are ready, and a wait after a round
too short for the writeback; against a model of the schedule."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.gemm.streamer import AStreamer


def expected_rows(M, K, rows, cols, N, chunk, accumulate, carry_in, carry_out, a_img, acc_img):
    """What enters the array, row by row: (a, kvalid, boundary, bank, last, chunk_in,
    total_in) with the 16-bit lanes as lists."""
    KB, NT = -(-K // rows), -(-N // cols)
    out = []
    q = 0
    for p in range(KB):
        k0 = p * rows
        kvalid = sum(1 << r for r in range(rows) if k0 + r < K)
        boundary = sum(1 << r for r in range(rows)
                       if chunk is not None and k0 + r < K and k0 + r != 0
                       and (k0 + r) % chunk == 0)
        for nt in range(NT):
            for i in range(M):
                word = acc_img[i * NT + nt]
                chunks = [int(word >> (32 * c)) & 0xFFFF for c in range(cols)]
                totals = [int(word >> (32 * c + 16)) & 0xFFFF for c in range(cols)]
                if p == 0 and not carry_in:
                    chunks = [0] * cols
                    if not accumulate:
                        totals = [0] * cols
                out.append((a_img[i * KB + p], kvalid, boundary, q % 2,
                            int(p == KB - 1 and not carry_out), chunks, totals))
            q += 1
    return out


def run_streamer(rows, cols, M, N, K, chunk, gap, flags, seed, always_ready=False,
                 read_latency=1):
    rng = np.random.default_rng(seed)
    KB, NT = -(-K // rows), -(-N // cols)
    a_img = [int(x) for x in rng.integers(0, 1 << (8 * rows), M * KB, dtype=np.uint64)]
    acc_img = [int.from_bytes(rng.bytes(4 * cols), "little") for _ in range(M * NT)]
    dut = AStreamer(rows, cols, a_depth=M * KB, acc_depth=M * NT, gap=gap,
                    read_latency=read_latency)
    # The memories: the addresses of the last read_latency cycles, the oldest first.
    line = [[(0, 0)] * read_latency]
    got = {"rows": [], "issue_cycles": [], "streamed": 0, "early": False}
    passes = KB * NT

    async def bench(ctx):
        # While no command runs, the accumulator address follows the host's.
        ctx.set(dut.follow, 1)
        ctx.set(dut.host_raddr, M * NT - 1)
        await ctx.tick().repeat(2)
        assert ctx.get(dut.acc_raddr) == M * NT - 1
        ctx.set(dut.follow, 0)
        for name, v in (("m", M), ("k", K), ("kb", KB), ("nt", NT),
                        ("chunk_log2", 0 if chunk is None else chunk.bit_length() - 1),
                        ("no_chunk", chunk is None), *flags.items()):
            ctx.set(getattr(dut, name), int(v))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        loaded = 0             # passes whose weights the (modelled) loader has put in
        streamed = 0
        for cycle in range(passes * (M + gap + 40) + 200):
            if loaded < passes and loaded <= streamed + 1 and (always_ready
                                                               or rng.random() < 0.3):
                loaded += 1
            ctx.set(dut.ready, loaded > streamed)
            (_, _, a_addr, acc_addr, pulse, valid, a, kvalid, boundary, bank, last,
             chunk_in, total_in) = await ctx.tick().sample(
                dut.a_raddr, dut.acc_raddr, dut.streamed, dut.valid, dut.a, dut.kvalid,
                dut.boundary, dut.bank, dut.last, dut.chunk_in, dut.total_in)
            line[0] = line[0][1:] + [(a_addr, acc_addr)]
            a_addr, acc_addr = line[0][0]
            ctx.set(dut.a_rdata, a_img[a_addr] if a_addr < len(a_img) else 0)
            ctx.set(dut.acc_rdata, acc_img[acc_addr] if acc_addr < len(acc_img) else 0)
            if pulse:
                streamed += 1
                if streamed > loaded:
                    got["early"] = True
            if valid:
                got["rows"].append((int(a), int(kvalid), int(boundary), int(bank), int(last),
                                    [int(chunk_in) >> (16 * c) & 0xFFFF for c in range(cols)],
                                    [int(total_in) >> (16 * c) & 0xFFFF for c in range(cols)]))
                got["issue_cycles"].append(cycle)
        got["streamed"] = streamed
        got["issued"] = ctx.get(dut.issued)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = expected_rows(M, K, rows, cols, N, chunk, flags.get("accumulate", 0),
                         flags.get("carry_in", 0), flags.get("carry_out", 0), a_img, acc_img)
    return want, got


@pytest.mark.parametrize("rows,cols,M,N,K,chunk,gap,flags", [
    (2, 2, 3, 5, 7, 2, 0, {}),
    (2, 2, 3, 5, 7, 4, 9, {"accumulate": 1}),            # rounds of 9 rows: no wait
    (2, 2, 3, 5, 7, 4, 30, {}),                          # rounds of 9 rows: a wait of 21
    (3, 2, 1, 3, 10, None, 6, {"carry_in": 1}),          # M = 1: every row ends a pass
    (2, 3, 4, 4, 5, 1, 0, {"carry_out": 1, "accumulate": 1}),
    (1, 1, 2, 2, 3, 2, 3, {}),
    (4, 4, 6, 9, 13, 8, 20, {}),
])
@pytest.mark.parametrize("read_latency", [1, 2, 3])
def test_rows_of_every_pass(rows, cols, M, N, K, chunk, gap, flags, read_latency):
    want, got = run_streamer(rows, cols, M, N, K, chunk, gap, flags, seed=M * 7 + K,
                             read_latency=read_latency)
    assert not got["early"], "a pass streamed before its weights were ready"
    assert got["streamed"] == -(-K // rows) * -(-N // cols)
    assert got["issued"] == len(want)
    assert len(got["rows"]) == len(want)
    for i, (g, w) in enumerate(zip(got["rows"], want)):
        assert g == w, (i, g, w)
    # The rows of a pass are consecutive, passes a cycle apart at least, and the first row of
    # a round comes `gap` cycles after the first row of the round before at the earliest.
    NT = -(-N // cols)
    cyc = got["issue_cycles"]
    for i in range(1, len(cyc)):
        assert cyc[i] - cyc[i - 1] == 1 if i % M else cyc[i] - cyc[i - 1] >= 2, (i, cyc)
    for first in range(M * NT, len(cyc), M * NT):
        assert cyc[first] - cyc[first - M * NT] >= gap, (first, cyc)
        if M * NT < gap:        # a short round waits the rest of the gap at least
            assert cyc[first] - cyc[first - 1] >= gap - M * NT + 1, (first, cyc)


@pytest.mark.parametrize("M,N,gap", [(3, 5, 30), (1, 7, 9), (4, 4, 8), (5, 2, 12)])
def test_a_short_round_waits_the_rest_of_the_gap(M, N, gap):
    """With the weights always ready, passes follow each other a cycle apart, and a round of
    M * NT rows shorter than the gap is followed by exactly the rest of it."""
    want, got = run_streamer(2, 2, M, N, 6, 2, gap, {}, seed=1, always_ready=True)
    assert got["rows"] == want
    NT = -(-N // 2)
    cyc = got["issue_cycles"]
    for i in range(1, len(cyc)):
        step = cyc[i] - cyc[i - 1]
        if i % (M * NT) == 0:
            assert step == max(gap - M * NT, 0) + 2, (i, cyc)
        else:
            assert step == (1 if i % M else 2), (i, cyc)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="a_depth must be a positive integer"):
        AStreamer(2, 2, a_depth=0, acc_depth=4)
    with pytest.raises(ValueError, match="read_latency must be an integer from 1 to 4"):
        AStreamer(2, 2, a_depth=4, acc_depth=4, read_latency=0)

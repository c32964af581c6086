"""hw.gemm.weights: the weights of every pass, in order, into alternating banks, never into a
bank a pass still uses; against a model of the pass order, with a streamer that takes passes
after random delays."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.gemm.weights import WeightLoader


def expected_passes(B, rows, cols):
    """The weight rows of every pass, in the order the engine runs them: per pass a list of
    ``rows`` rows of ``cols`` bytes, +0 outside ``B``."""
    K, N = B.shape
    passes = []
    for k0 in range(0, K, rows):
        for n0 in range(0, N, cols):
            w = np.zeros((rows, cols), np.int64)
            part = B[k0:k0 + rows, n0:n0 + cols]
            w[:part.shape[0], :part.shape[1]] = part
            passes.append(w)
    return passes


def run_loader(rows, cols, K, N, trans_b, b_width, flush, seed):
    """Load every pass of a ``K x N`` B, the streamer taking each after a random time.
    Returns the rows written per pass with their banks, and the events of the run."""
    rng = np.random.default_rng(seed)
    B = rng.integers(0, 256, (K, N))
    stored = np.ascontiguousarray(B.T if trans_b else B).astype(np.uint8).tobytes()
    stored += rng.integers(0, 256, -len(stored) % b_width).astype(np.uint8).tobytes()
    words = [int.from_bytes(stored[i:i + b_width], "little")
             for i in range(0, len(stored), b_width)]
    dut = WeightLoader(rows, cols, b_depth=4 * len(stored), b_width=b_width, flush=flush)
    NT, KB = -(-N // cols), -(-K // rows)
    passes = NT * KB
    got = {"rows": [], "streamed_at": [], "loaded_at": [], "ready_early": False}

    async def bench(ctx):
        for name, v in (("n", N), ("k", K), ("nt", NT), ("kb", KB), ("rows_n", rows * N),
                        ("cols_k", cols * K), ("trans_b", trans_b)):
            ctx.set(getattr(dut, name), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        current = []           # rows of the pass being written
        streaming = 0          # cycles the streamer still spends on its pass
        streamed = 0
        for cycle in range(200 * passes * rows * cols + 1000):
            # The streamer: takes a pass when one is ready, streams it for a while.
            pulse = 0
            if streaming == 1:
                pulse = 1
            ctx.set(dut.streamed, pulse)
            _, _, addr, ready, we, row, data, bank = await ctx.tick().sample(
                dut.b_raddr, dut.ready, dut.w_we, dut.w_row, dut.w_data, dut.w_bank)
            # Beyond B the memory holds junk, which the loader must mask.
            ctx.set(dut.b_rdata, words[addr] if addr < len(words)
                    else int(rng.integers(0, 1 << (8 * b_width), dtype=np.uint64)))
            if pulse:
                streamed += 1
                got["streamed_at"].append(cycle)
                streaming = 0
            elif streaming:
                streaming -= 1
            elif ready and streamed < passes:
                if len(got["loaded_at"]) <= streamed:
                    got["ready_early"] = True
                streaming = int(rng.integers(1, 3 * rows * cols))
            if we:
                current.append((int(row), int(bank),
                                [(int(data) >> (8 * c)) & 0xFF for c in range(cols)], cycle))
                if len(current) == rows:
                    got["rows"].append(current)
                    got["loaded_at"].append(cycle)
                    current = []
            if streamed == passes:
                break
        for _ in range(4 * rows * cols):   # nothing more is written
            _, _, we = await ctx.tick().sample(dut.w_we)
            assert not we, "a write after the last pass"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return B, got


@pytest.mark.parametrize("rows,cols,K,N,trans_b,b_width", [
    (2, 2, 5, 3, 0, 1),
    (2, 3, 7, 8, 1, 4),      # transposed, partial tiles both ways
    (3, 2, 9, 4, 0, 8),
    (1, 1, 3, 2, 1, 2),      # one PE: a pass per (k, n)
    (4, 4, 4, 4, 0, 16),     # one pass
    (4, 2, 13, 7, 0, 2),
])
def test_passes_in_order_into_free_banks(rows, cols, K, N, trans_b, b_width):
    flush = 5
    B, got = run_loader(rows, cols, K, N, trans_b, b_width, flush, seed=rows * 31 + K)
    want = expected_passes(B, rows, cols)
    assert len(got["rows"]) == len(want)
    assert not got["ready_early"], "ready before a pass was loaded"
    for q, (written, w) in enumerate(zip(got["rows"], want)):
        assert [r for r, *_ in written] == list(range(rows)), (q, written)
        assert {b for _, b, *_ in written} == {q % 2}, (q, written)
        assert [d for _, _, d, _ in written] == w.tolist(), (q, written, w)
        if q >= 2:
            # Pass q goes into the bank of pass q - 2 only after that one was streamed and
            # flushed.
            first_write = written[0][3]
            assert first_write > got["streamed_at"][q - 2] + flush, (q, got)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="b_width must be a power of two"):
        WeightLoader(2, 2, b_depth=16, b_width=3)
    with pytest.raises(ValueError, match="flush must be"):
        WeightLoader(2, 2, b_depth=16, flush=-1)
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        WeightLoader(0, 2, b_depth=16)

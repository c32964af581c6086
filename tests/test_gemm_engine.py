"""The GEMM engine (buffers, controller, array) in Amaranth's simulator against the golden
model's chunked GEMM, loading and reading the buffers through the engine's host ports."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.fp import DLFLOAT16, E4M3, E5M2
from fp8accel.hw.gemm.engine import Error, GemmEngine
from fp8accel.hw.gemm.layout import a_image, c_from_image, c_image
from fp8accel.sim import golden


def random_fp8(rng, shape, fmt):
    vals = rng.standard_normal(shape) * 2.0 ** rng.integers(-3, 4, shape)
    codes = golden.encode(vals, fmt, saturate=True).astype(np.int64)
    codes[rng.random(shape) < 0.05] = 0x80
    return codes


def run_engine(engine, commands):
    """Run ``commands``: each a dict with A, B (and C) to load, then the command fields.
    Returns per command ``(C, cycles, active, error)``."""
    rows, cols = engine.rows, engine.cols
    out = []

    async def bench(ctx):
        for cmd in commands:
            A, B = cmd.get("A"), cmd.get("B")
            M, K = cmd["m"], cmd["k"]
            N = cmd["n"]
            tb = cmd.get("trans_b", False)
            if A is not None:
                for word, banks in enumerate(a_image(A, rows)):
                    ctx.set(engine.a_addr, word)
                    ctx.set(engine.a_data, int.from_bytes(banks.tobytes(), "little"))
                    ctx.set(engine.a_we, 1)
                    await ctx.tick()
                ctx.set(engine.a_we, 0)
            if B is not None:
                stored = np.ascontiguousarray(B.T if tb else B).astype(np.uint8).tobytes()
                bw = engine.b_width
                stored += bytes(-len(stored) % bw)
                for word in range(len(stored) // bw):
                    ctx.set(engine.b_addr, word)
                    ctx.set(engine.b_data, int.from_bytes(stored[word * bw:word * bw + bw],
                                                          "little"))
                    ctx.set(engine.b_we, 1)
                    await ctx.tick()
                ctx.set(engine.b_we, 0)
            if cmd.get("C") is not None:
                for word, lanes in enumerate(c_image(cmd["C"], cols)):
                    ctx.set(engine.c_addr, word)
                    ctx.set(engine.c_data, int.from_bytes(lanes.astype("<u2").tobytes(),
                                                          "little"))
                    ctx.set(engine.c_we, 1)
                    await ctx.tick()
                ctx.set(engine.c_we, 0)
            for name in ("a_e4m3", "b_e4m3", "chunk_log2", "no_chunk", "rna", "trans_b",
                         "accumulate"):
                ctx.set(getattr(engine, name), int(cmd.get(name, 0)))
            ctx.set(engine.m, M)
            ctx.set(engine.n, N)
            ctx.set(engine.k, K)
            ctx.set(engine.start, 1)
            await ctx.tick()
            ctx.set(engine.start, 0)
            for _ in range(200000):
                if ctx.get(engine.done):
                    break
                await ctx.tick()
            else:
                raise AssertionError("the engine did not finish")
            error = ctx.get(engine.error)
            if error:
                out.append((None, 0, 0, error))
                continue
            NT = -(-N // cols)
            img = np.zeros((M * NT, cols), np.uint16)
            for word in range(M * NT):
                ctx.set(engine.c_raddr, word)
                await ctx.tick().repeat(3)
                v = ctx.get(engine.c_rdata)
                img[word] = [(v >> (16 * c)) & 0xFFFF for c in range(cols)]
            C = c_from_image(img, M, N, cols)
            out.append((C, ctx.get(engine.cycles), ctx.get(engine.active), 0))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def chunk_args(chunk):
    if chunk is None:
        return {"no_chunk": 1}
    return {"chunk_log2": chunk.bit_length() - 1}


@pytest.mark.parametrize("rows,cols,M,N,K,chunk,b_width", [
    (2, 2, 3, 2, 5, 2, 1),
    (2, 2, 4, 3, 7, None, 8),  # N spans two column tiles, K three passes; B in 8-byte words
    (3, 2, 5, 5, 8, 4, 4),     # chunk longer than the array height
    (2, 3, 1, 1, 1, 1, 2),     # the smallest GEMM
    (1, 1, 3, 3, 5, 2, 1),     # one PE: a pass per k, a tile per column, passes back to back
    (1, 2, 1, 3, 4, None, 32),  # M = 1: every pass waits for the previous writeback
])
def test_engine_matches_golden(rows, cols, M, N, K, chunk, b_width, rng):
    engine = GemmEngine(rows, cols, a_depth=64, b_depth=256, acc_depth=64, b_width=b_width)
    A = random_fp8(rng, (M, K), E5M2)
    B = random_fp8(rng, (K, N), E5M2)
    (C, cycles, active, error), = run_engine(engine, [
        {"A": A, "B": B, "m": M, "n": N, "k": K, **chunk_args(chunk)}])
    assert error == 0
    assert np.array_equal(C, golden.gemm(A, B, chunk=chunk)), (C, golden.gemm(A, B, chunk=chunk))
    assert active == M * -(-K // rows) * -(-N // cols)
    assert cycles >= active


def test_engine_options_and_back_to_back(rng):
    """Formats, rna, transposed B and accumulation into C; then a second command that
    accumulates into the first one's result."""
    engine = GemmEngine(2, 2, a_depth=64, b_depth=256, acc_depth=64, b_width=4)
    M, N, K = 3, 3, 6
    A = random_fp8(rng, (M, K), E4M3)
    B = random_fp8(rng, (K, N), E5M2)
    C0 = golden.encode(rng.standard_normal((M, N)), DLFLOAT16).astype(np.int64)
    first = {"A": A, "B": B, "C": C0, "m": M, "n": N, "k": K, "a_e4m3": 1, "rna": 1,
             "trans_b": 1, "accumulate": 1, "chunk_log2": 1}
    second = {"m": M, "n": N, "k": K, "a_e4m3": 1, "trans_b": 1, "accumulate": 1,
              "chunk_log2": 2}
    r1, r2 = run_engine(engine, [first, second])
    ref1 = golden.gemm(A, B, a_fmt=E4M3, chunk=2, rounding="rna", C=C0)
    assert np.array_equal(r1[0], ref1)
    ref2 = golden.gemm(A, B, a_fmt=E4M3, chunk=4, C=ref1)
    assert np.array_equal(r2[0], ref2)


@pytest.mark.parametrize("cmd,code", [
    ({"m": 0, "n": 1, "k": 1}, Error.ZERO_DIM),
    ({"m": 1, "n": 1, "k": 0}, Error.ZERO_DIM),
    ({"m": 65, "n": 1, "k": 2}, Error.TOO_LARGE),
    ({"m": 1, "n": 1, "k": 300}, Error.TOO_LARGE),
])
def test_engine_rejects_bad_commands(cmd, code, rng):
    engine = GemmEngine(2, 2, a_depth=64, b_depth=256, acc_depth=64)
    A = random_fp8(rng, (2, 3), E5M2)
    B = random_fp8(rng, (3, 2), E5M2)
    bad, good = run_engine(engine, [cmd, {"A": A, "B": B, "m": 2, "n": 2, "k": 3,
                                          "chunk_log2": 0}])
    assert bad[3] == code
    assert good[3] == 0
    assert np.array_equal(good[0], golden.gemm(A, B, chunk=1))

"""The GEMM engine (buffers, controller, array) in Amaranth's simulator against the golden
model's chunked GEMM, loading and reading the buffers through the engine's host ports."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from fp8accel.hw.fp import DLFLOAT16, E4M3, E5M2
from fp8accel.hw.gemm.engine import C_READ_LATENCY, Error, GemmEngine
from fp8accel.hw.gemm.layout import a_image, c_from_image, c_image
from fp8accel.sim import golden


def random_fp8(rng, shape, fmt):
    vals = rng.standard_normal(shape) * 2.0 ** rng.integers(-3, 4, shape)
    codes = golden.encode(vals, fmt, saturate=True).astype(np.int64)
    codes[rng.random(shape) < 0.05] = 0x80
    return codes


def simulate(top, engine, bench):
    """Run ``bench`` on ``top`` (the engine, or a module around it) and check every cycle that
    no block RAM is read and written at one address while the read is used: the buffers'
    memories are built without logic for such collisions (``NO_RW_CHECK``). While the engine
    runs, ``A`` and ``B`` are never read and written at one address, and the accumulator only
    when no row was issued for four cycles (the streamer's address then rests on a row it no
    longer reads)."""
    bad = []

    async def watch(ctx):
        names = [name for name, _ in engine.collisions]
        flags = [flag for _, flag in engine.collisions]
        issued = [0] * 5
        async for _, _, busy, active, *hits in ctx.tick().sample(engine.busy, engine.active,
                                                                 *flags):
            issued = issued[1:] + [active]
            if not busy:
                continue
            for name, hit in zip(names, hits):
                if hit and (not name.startswith("acc") or len(set(issued)) > 1):
                    bad.append((name, issued[-1]))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_process(watch)
    sim.add_testbench(bench)
    sim.run()
    assert engine.collisions and not bad, f"reads beside writes at one address: {bad[:5]}"


async def host_write(ctx, we, addr, data, words):
    """Write ``words`` (integers) at addresses 0, 1, ... through one of the engine's host write
    ports (``we``, ``addr``, ``data``), a word per cycle."""
    for i, word in enumerate(words):
        ctx.set(addr, i)
        ctx.set(data, int(word))
        ctx.set(we, 1)
        await ctx.tick()
    ctx.set(we, 0)


def a_words(A, rows):
    """The A buffer's words of ``A``, as the host writes them."""
    return [int.from_bytes(banks.tobytes(), "little") for banks in a_image(A, rows)]


def b_words(B, width):
    """The B buffer's words of the stored ``B`` (``width`` bytes each)."""
    data = np.ascontiguousarray(B).astype(np.uint8).tobytes()
    data += bytes(-len(data) % width)
    return [int.from_bytes(data[i:i + width], "little") for i in range(0, len(data), width)]


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
            for name in ("a_buf", "b_buf", "c_buf", "a_wbuf", "b_wbuf", "c_wbuf", "c_rbuf"):
                ctx.set(getattr(engine, name), int(cmd.get("buf", 0)))
            if A is not None:
                await host_write(ctx, engine.a_we, engine.a_addr, engine.a_data,
                                 a_words(A, rows))
            if B is not None:
                await host_write(ctx, engine.b_we, engine.b_addr, engine.b_data,
                                 b_words(B.T if tb else B, engine.b_width))
            if cmd.get("C") is not None:
                await host_write(ctx, engine.c_we, engine.c_addr, engine.c_data,
                                 [int.from_bytes(lanes.astype("<u2").tobytes(), "little")
                                  for lanes in c_image(cmd["C"], cols)])
            for name in ("a_e4m3", "b_e4m3", "chunk_log2", "no_chunk", "rna", "trans_b",
                         "accumulate", "carry_in", "carry_out"):
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
                await ctx.tick().repeat(C_READ_LATENCY)
                v = ctx.get(engine.c_rdata)
                img[word] = [(v >> (16 * c)) & 0xFFFF for c in range(cols)]
            C = c_from_image(img, M, N, cols)
            out.append((C, ctx.get(engine.cycles), ctx.get(engine.active), 0))

    simulate(engine, engine, bench)
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
    (1, 2, 1, 3, 4, None, 32),  # M = 1: every round of passes waits for the writeback
    (5, 6, 3, 7, 11, 2, 8),    # settings and weight writes through two tree levels
])
@pytest.mark.parametrize("buf", [None, 0, 1], ids=["one-buffer", "buffer0", "buffer1"])
def test_engine_matches_golden(rows, cols, M, N, K, chunk, b_width, buf, rng):
    engine = GemmEngine(rows, cols, a_depth=64, b_depth=256, acc_depth=64, b_width=b_width,
                        buffers=1 if buf is None else 2)
    A = random_fp8(rng, (M, K), E5M2)
    B = random_fp8(rng, (K, N), E5M2)
    (C, cycles, active, error), = run_engine(engine, [
        {"A": A, "B": B, "m": M, "n": N, "k": K, "buf": buf or 0, **chunk_args(chunk)}])
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


def engine_for(rows, cols, M, N, K):
    """An engine with buffers just large enough for ``M x N x K``."""
    return GemmEngine(rows, cols, a_depth=max(2, M * -(-K // rows)), b_depth=max(2, K * N),
                      acc_depth=max(2, M * -(-N // cols)), b_width=4)


# Short M: the passes of all column tiles run before the next pass of any, and a pass of a
# tile reads what the one before it (NT passes earlier) wrote back. The engine waits at the end
# of a round of M * NT rows shorter than the array's latency plus 8 (43 cycles on 2x2, 53 on
# 3x2, 65 on 4x4), as all of those below are, unless noted.
@pytest.mark.parametrize("rows,cols,M,N,K,chunk,trans_b", [
    (2, 2, 1, 7, 9, 2, 0),         # M = 1: 4 tiles (the last one partial), 5 passes
    (2, 2, 2, 5, 8, None, 0),
    (2, 3, 3, 8, 7, 4, 0),         # a chunk longer than a pass
    (3, 2, 5, 9, 10, 1, 0),        # every k starts a chunk
    (2, 2, 8, 6, 12, 8, 0),
    (4, 4, 17, 10, 13, 2, 0),      # M * NT = 51 on 4x4
    (5, 3, 4, 7, 12, 2, 0),        # five rows: two registers at the array's edge
    (2, 2, 32, 5, 6, None, 0),     # M * NT = 96: no wait
    (2, 2, 3, 5, 7, 2, 1),         # transposed B
    (2, 3, 2, 7, 5, None, 1),
    (1, 1, 2, 3, 4, None, 0),      # one PE: a tile per column, a pass per k
    (1, 2, 1, 5, 3, 1, 1),
    (2, 2, 3, 28, 5, 2, 0),        # M * NT = 42: one below the wait threshold (latency + 8)
    (2, 2, 3, 29, 5, 2, 0),        # 45: just above it
    (2, 2, 1, 86, 3, None, 0),     # 43: on it
])
def test_engine_short_m_many_tiles(rows, cols, M, N, K, chunk, trans_b, rng):
    engine = engine_for(rows, cols, M, N, K)
    A = random_fp8(rng, (M, K), E5M2)
    B = random_fp8(rng, (K, N), E5M2)
    (C, _, active, error), = run_engine(engine, [
        {"A": A, "B": B, "m": M, "n": N, "k": K, "trans_b": trans_b, **chunk_args(chunk)}])
    assert error == 0
    ref = golden.gemm(A, B, chunk=chunk)
    assert np.array_equal(C, ref), (C, ref)
    assert active == M * -(-K // rows) * -(-N // cols)


def test_engine_short_m_options(rng):
    """Short M over several column tiles and passes: E4M3 A, round-to-nearest-away,
    transposed B, accumulation into C; then a command that accumulates into that result."""
    engine = engine_for(2, 2, 3, 5, 7)
    M, N, K = 3, 5, 7
    A = random_fp8(rng, (M, K), E4M3)
    B = random_fp8(rng, (K, N), E5M2)
    C0 = golden.encode(rng.standard_normal((M, N)), DLFLOAT16).astype(np.int64)
    first = {"A": A, "B": B, "C": C0, "m": M, "n": N, "k": K, "a_e4m3": 1, "rna": 1,
             "trans_b": 1, "accumulate": 1, "chunk_log2": 1}
    second = {"m": M, "n": N, "k": K, "a_e4m3": 1, "trans_b": 1, "accumulate": 1,
              "no_chunk": 1}
    r1, r2 = run_engine(engine, [first, second])
    ref1 = golden.gemm(A, B, a_fmt=E4M3, chunk=2, rounding="rna", C=C0)
    assert np.array_equal(r1[0], ref1)
    assert np.array_equal(r2[0], golden.gemm(A, B, a_fmt=E4M3, chunk=None, C=ref1))


@pytest.mark.parametrize("chunk,tiles", [
    # K tiles (k0, k1, accumulate, carry_in, carry_out) as the host's tile plan makes them.
    (8, [(0, 4, 0, 0, 1), (4, 8, 0, 1, 0), (8, 12, 1, 0, 1), (12, 16, 0, 1, 0)]),
    (None, [(0, 5, 0, 0, 1), (5, 11, 0, 1, 1), (11, 14, 0, 1, 0)]),
])
def test_engine_short_m_carries_the_chunk(chunk, tiles, rng):
    """K in tiles that end inside a chunk: each carries the running chunk to the next, over
    three column tiles with M = 3."""
    M, N, K = 3, 5, tiles[-1][1]
    engine = engine_for(2, 2, M, N, max(k1 - k0 for k0, k1, *_ in tiles))
    A = random_fp8(rng, (M, K), E5M2)
    B = random_fp8(rng, (K, N), E5M2)
    cmds = [{"A": A[:, k0:k1], "B": B[k0:k1], "m": M, "n": N, "k": k1 - k0,
             "accumulate": acc, "carry_in": cin, "carry_out": cout, **chunk_args(chunk)}
            for k0, k1, acc, cin, cout in tiles]
    results = run_engine(engine, cmds)
    assert all(r[3] == 0 for r in results)
    assert np.array_equal(results[-1][0], golden.gemm(A, B, chunk=chunk))


def test_engine_short_m_passes_back_to_back(rng):
    """M = 32 on 2x2 (latency 35) over 4 column tiles: each pass follows the one before with
    the single cycle between passes, as for a long M."""
    rows, cols, M, N, K = 2, 2, 32, 8, 64
    engine = engine_for(rows, cols, M, N, K)
    A = random_fp8(rng, (M, K), E5M2)
    B = random_fp8(rng, (K, N), E5M2)
    (C, cycles, active, error), = run_engine(engine, [
        {"A": A, "B": B, "m": M, "n": N, "k": K, "chunk_log2": 4}])
    assert error == 0
    assert np.array_equal(C, golden.gemm(A, B, chunk=16))
    passes = -(-K // rows) * -(-N // cols)
    assert active == passes * M
    assert cycles <= passes * (M + 1) + engine.array.latency + 32, cycles


@pytest.mark.slow
def test_engine_weight_gradient_shape_cycles():
    """M = 32, N = 32, K = 256 on 4x4 (8 column tiles, 64 passes each): no waits for the
    accumulator between passes. The weight banks' turnaround (a bank's rows are rewritten once
    the last row of A of the pass two before has passed them) still limits it: 20,008 cycles
    (33,844 with the tile-by-tile order and whole-array flush)."""
    M, N, K = 32, 32, 256
    engine = engine_for(4, 4, M, N, K)
    (C, cycles, active, error), = run_engine(engine, [
        {"m": M, "n": N, "k": K, "chunk_log2": 6}])
    assert error == 0 and not C.any()      # zero buffers: +0
    assert active == 16384
    assert cycles < 21000, cycles


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


def test_engine_double_buffers_overlap_host_access(rng):
    """Two buffers: while a command runs on buffer 0, the host writes A, B and C of buffer 1
    and reads the result a command left in buffer 1 before; both commands and the read are
    exact, and the host's accesses do not reach the running command's buffers."""
    rows, cols = 2, 2
    engine = GemmEngine(rows, cols, a_depth=64, b_depth=256, acc_depth=64, b_width=4, buffers=2)
    M, N, K = 9, 5, 11
    ops = [(random_fp8(rng, (M, K), E5M2), random_fp8(rng, (K, N), E5M2)) for _ in range(3)]
    got = {}

    async def write_buffers(ctx, buf, A, B):
        for name in ("a_wbuf", "b_wbuf"):
            ctx.set(getattr(engine, name), buf)
        await host_write(ctx, engine.a_we, engine.a_addr, engine.a_data, a_words(A, rows))
        await host_write(ctx, engine.b_we, engine.b_addr, engine.b_data, b_words(B, 4))

    async def start(ctx, buf):
        for name in ("a_buf", "b_buf", "c_buf"):
            ctx.set(getattr(engine, name), buf)
        for name, v in (("m", M), ("n", N), ("k", K), ("chunk_log2", 2)):
            ctx.set(getattr(engine, name), v)
        ctx.set(engine.start, 1)
        await ctx.tick()
        ctx.set(engine.start, 0)

    async def read_c(ctx, buf):
        ctx.set(engine.c_rbuf, buf)
        NT = -(-N // cols)
        img = np.zeros((M * NT, cols), np.uint16)
        for word in range(M * NT):
            ctx.set(engine.c_raddr, word)
            await ctx.tick().repeat(C_READ_LATENCY)
            v = ctx.get(engine.c_rdata)
            img[word] = [(v >> (16 * c)) & 0xFFFF for c in range(cols)]
        return c_from_image(img, M, N, cols)

    async def wait(ctx):
        while not ctx.get(engine.done):
            await ctx.tick()

    async def bench(ctx):
        await write_buffers(ctx, 1, *ops[0])
        await start(ctx, 1)
        await wait(ctx)
        await write_buffers(ctx, 0, *ops[1])
        await start(ctx, 0)
        # While buffer 0 computes: buffer 1's result out, new operands into buffer 1, and a
        # C into buffer 1 written over the old result (after it was read).
        assert ctx.get(engine.busy)
        got["first"] = await read_c(ctx, 1)
        await write_buffers(ctx, 1, *ops[2])
        ctx.set(engine.c_wbuf, 1)
        for word in range(M * -(-N // cols)):
            ctx.set(engine.c_addr, word)
            ctx.set(engine.c_data, 0xFFFF_FFFF)
            ctx.set(engine.c_we, 1)
            await ctx.tick()
        ctx.set(engine.c_we, 0)
        got["busy_after"] = ctx.get(engine.busy)
        await wait(ctx)
        got["second"] = await read_c(ctx, 0)
        await start(ctx, 1)
        await wait(ctx)
        got["third"] = await read_c(ctx, 1)

    simulate(engine, engine, bench)
    assert got["busy_after"], "the host's accesses took longer than the command: no overlap"
    for key, (A, B) in zip(("first", "second", "third"), ops):
        assert np.array_equal(got[key], golden.gemm(A, B, chunk=4)), key


@pytest.mark.parametrize("buffers", [1, 2])
def test_engine_takes_host_writes_from_the_first_idle_cycle(buffers, rng):
    """The host may write the accumulator memory in any cycle the engine is idle: in the cycle
    ``done`` rises, and in the cycle after a reset that interrupted a run. Every word written
    reads back exactly."""
    rows, cols = 2, 4
    engine = GemmEngine(rows, cols, a_depth=32, b_depth=128, acc_depth=32, buffers=buffers)
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.engine = engine
    M, N, K = 6, 8, 5
    A, B = random_fp8(rng, (M, K), E5M2), random_fp8(rng, (K, N), E5M2)
    got = []

    async def write_c(ctx, base):
        await host_write(ctx, engine.c_we, engine.c_addr, engine.c_data,
                         [(base + word) * 0x0001_0001_0001_0001 for word in range(4)])

    async def read_c(ctx):
        words = []
        for word in range(4):
            ctx.set(engine.c_raddr, word)
            await ctx.tick().repeat(C_READ_LATENCY)
            words.append(ctx.get(engine.c_rdata))
        return words

    async def bench(ctx):
        await host_write(ctx, engine.a_we, engine.a_addr, engine.a_data, a_words(A, rows))
        await host_write(ctx, engine.b_we, engine.b_addr, engine.b_data, b_words(B, 1))
        for name, v in (("m", M), ("n", N), ("k", K)):
            ctx.set(getattr(engine, name), v)
        for base, interrupt in ((0x100, False), (0x200, True)):
            ctx.set(engine.start, 1)
            await ctx.tick()
            ctx.set(engine.start, 0)
            if interrupt:
                await ctx.tick().repeat(40)
                assert ctx.get(engine.busy)
                ctx.set(cd.rst, 1)
                await ctx.tick()
                ctx.set(cd.rst, 0)
            else:
                while not ctx.get(engine.done):
                    await ctx.tick()
            assert not ctx.get(engine.busy)
            await write_c(ctx, base)
            got.append(await read_c(ctx))

    simulate(m, engine, bench)
    for words, base in zip(got, (0x100, 0x200)):
        assert [hex(w) for w in words] == [hex((base + i) * 0x0001_0001_0001_0001)
                                           for i in range(4)]

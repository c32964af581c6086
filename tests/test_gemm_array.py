"""The systolic array in Amaranth's simulator against the golden model's chunked GEMM.

The testbench plays the controller: it loads the weights of each pass into alternating banks,
streams the rows of A with the chunk-boundary flags of the pass, and feeds each pass the chunk
and total that the previous pass left at the bottom.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.fp import BINARY16, BINARY32, DLFLOAT16, E4M3, E5M2
from fp8accel.hw.gemm import E5M3, SystolicArray, widen_fp8
from fp8accel.sim import golden


def run_gemm(array, A, B, *, a_fmt=E5M2, b_fmt=E5M2, chunk=None, rna=False, C=None):
    """Compute ``A . B`` (B at most ``cols`` wide) on ``array`` pass by pass."""
    rows, cols = array.rows, array.cols
    M, K = A.shape
    N = B.shape[1]
    assert N <= cols
    cl = K if chunk is None else chunk
    passes = -(-K // rows)
    w = array.acc_fmt.width
    n = 8 if array.in_fmt is None else array.in_fmt.width
    chunk_v = np.zeros((M, cols), np.int64)
    total_v = np.zeros((M, cols), np.int64)
    if C is not None:
        total_v[:, :N] = C
    results = {}

    def pack(values, width):
        out = 0
        for j, v in enumerate(values):
            out |= int(v) << (width * j)
        return out

    def unpack(word, width, count):
        return [(word >> (width * j)) & ((1 << width) - 1) for j in range(count)]

    async def bench(ctx):
        nonlocal chunk_v, total_v
        # The command's settings, held from settle_latency cycles before its first weight.
        ctx.set(array.w_e4m3, int(b_fmt is E4M3))
        ctx.set(array.a_e4m3, int(a_fmt is E4M3))
        ctx.set(array.rna, int(rna))
        await ctx.tick().repeat(array.settle_latency)
        for p in range(passes):
            k0 = p * rows
            bank = p % 2
            ctx.set(array.w_e4m3, int(b_fmt is E4M3))
            for r in range(rows):
                k = k0 + r
                row = [int(B[k, j]) if k < K and j < N else 0 for j in range(cols)]
                ctx.set(array.w_data, pack(row, n))
                ctx.set(array.w_row, r)
                ctx.set(array.w_bank, bank)
                ctx.set(array.w_we, 1)
                await ctx.tick()
            ctx.set(array.w_we, 0)
            kvalid = sum(1 << r for r in range(rows) if k0 + r < K)
            boundary = sum(1 << r for r in range(rows)
                           if 0 < k0 + r < K and (k0 + r) % cl == 0)
            new_chunk = np.zeros_like(chunk_v)
            new_total = np.zeros_like(total_v)
            got = 0
            for cycle in range(M + array.latency):
                if cycle < M:
                    i = cycle
                    ctx.set(array.valid, 1)
                    ctx.set(array.a, pack([A[i, k0 + r] if k0 + r < K else 0
                                           for r in range(rows)], n))
                    ctx.set(array.kvalid, kvalid)
                    ctx.set(array.boundary, boundary)
                    ctx.set(array.a_e4m3, int(a_fmt is E4M3))
                    ctx.set(array.bank, bank)
                    ctx.set(array.chunk_in, pack(chunk_v[i], w))
                    ctx.set(array.total_in, pack(total_v[i], w))
                    ctx.set(array.rna, int(rna))
                    ctx.set(array.last, int(p == passes - 1))
                else:
                    ctx.set(array.valid, 0)
                await ctx.tick()
                if ctx.get(array.out_valid):
                    new_chunk[got] = unpack(ctx.get(array.chunk_out), w, cols)
                    new_total[got] = unpack(ctx.get(array.total_out), w, cols)
                    assert ctx.get(array.out_last) == int(p == passes - 1)
                    got += 1
            assert got == M
            chunk_v, total_v = new_chunk, new_total
        results["C"] = total_v[:, :N]

    sim = Simulator(array)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results["C"].astype(golden.code_dtype(array.acc_fmt))


def test_widen_is_exact_for_every_code():
    """E5M2 and E4M3 codes widen to E5M3 without changing their value."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Widen(wiring.Component):
        code: In(8)
        is_e4m3: In(1)
        out: Out(9)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.out.eq(widen_fp8(self.code, self.is_e4m3))
            return m

    dut = Widen()
    codes = np.arange(256)
    seen = {}

    async def bench(ctx):
        for fmt in (E5M2, E4M3):
            ctx.set(dut.is_e4m3, int(fmt is E4M3))
            seen[fmt] = []
            for c in codes:
                ctx.set(dut.code, int(c))
                seen[fmt].append(ctx.get(dut.out))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for fmt in (E5M2, E4M3):
        ref = golden.decode(codes, fmt)
        got = golden.decode(np.array(seen[fmt]), E5M3)
        assert np.array_equal(ref, got, equal_nan=True), fmt
        assert np.array_equal(np.signbit(ref[~np.isnan(ref)]), np.signbit(got[~np.isnan(ref)]))


def random_fp8(rng, shape, fmt):
    """Finite FP8 codes of moderate magnitude, with some zeros of both signs."""
    vals = rng.standard_normal(shape) * 2.0 ** rng.integers(-3, 4, shape)
    codes = golden.encode(vals, fmt, saturate=True).astype(np.int64)
    codes[rng.random(shape) < 0.05] = 0x80
    return codes


@pytest.mark.parametrize("rows,cols,M,K,chunk", [
    (2, 2, 3, 7, 2),       # K spans four passes, chunks of two rows
    (2, 3, 4, 5, None),    # no chunking, K not a multiple of the height
    (3, 2, 2, 8, 4),       # chunks longer than the array: they continue across passes
    (4, 2, 3, 9, 1),       # every product is its own chunk
])
def test_array_matches_golden(rows, cols, M, K, chunk, rng):
    array = SystolicArray(rows, cols)
    A = random_fp8(rng, (M, K), E5M2)
    B = random_fp8(rng, (K, cols), E5M2)
    got = run_gemm(array, A, B, chunk=chunk)
    ref = golden.gemm(A, B, chunk=chunk)
    assert np.array_equal(got, ref), (got, ref)


@pytest.mark.parametrize("a_fmt,b_fmt", [(E4M3, E5M2), (E5M2, E4M3)], ids=str)
@pytest.mark.parametrize("size", [2, 5])    # 5: the settings travel through two tree levels
def test_array_formats_rna_and_accumulate(a_fmt, b_fmt, size, rng):
    array = SystolicArray(size, size)
    A = random_fp8(rng, (3, 6), a_fmt)
    B = random_fp8(rng, (6, size), b_fmt)
    C = golden.encode(rng.standard_normal((3, size)), DLFLOAT16).astype(np.int64)
    got = run_gemm(array, A, B, a_fmt=a_fmt, b_fmt=b_fmt, chunk=2, rna=True, C=C)
    ref = golden.gemm(A, B, a_fmt=a_fmt, b_fmt=b_fmt, chunk=2, rounding="rna", C=C)
    assert np.array_equal(got, ref), (got, ref)


@pytest.mark.parametrize("value", [0, 1])
def test_array_rejects_bad_sizes(value):
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        SystolicArray(value - 1, 2)


# The arrays of the area comparison (docs/fpga.md) ------------------------------------------------

def random_binary16(rng, shape):
    """BINARY16 codes of moderate magnitude, with some zeros of both signs and subnormals."""
    vals = rng.standard_normal(shape) * 2.0 ** rng.integers(-20, 8, shape)
    codes = vals.astype(np.float16).view(np.uint16).astype(np.int64)
    codes[rng.random(shape) < 0.05] = 0x8000
    return codes


@pytest.mark.parametrize("acc_fmt", [BINARY32, BINARY16], ids=str)
@pytest.mark.parametrize("chunk", [None, 2])
def test_binary16_array_matches_golden(acc_fmt, chunk, rng):
    """BINARY16 operands into a BINARY32 or BINARY16 accumulator, chunked as ours."""
    array = SystolicArray(2, 3, acc_fmt, BINARY16)
    A = random_binary16(rng, (3, 7))
    B = random_binary16(rng, (7, 3))
    got = run_gemm(array, A, B, chunk=chunk)
    ref = golden.gemm(A, B, BINARY16, BINARY16, acc_fmt, chunk=chunk)
    assert np.array_equal(got, ref), (got, ref)


@pytest.mark.parametrize("acc_fmt,in_fmt,product", [(BINARY32, BINARY16, "logic"),
                                                    (BINARY32, BINARY16, "dsp"),
                                                    (DLFLOAT16, None, "logic")], ids=str)
def test_conventional_array_is_a_running_sum(acc_fmt, in_fmt, product, rng):
    """``chunked=False``: one running sum per column, in order of k, from C (here +0): the
    golden model's GEMM with one chunk of all K. ``product="dsp"`` (the area study's
    conventional arrays with DSP blocks) gives the same sums."""
    array = SystolicArray(3, 2, acc_fmt, in_fmt, chunked=False, product=product)
    assert array.product == product
    if in_fmt is None:
        A, B = random_fp8(rng, (4, 8), E5M2), random_fp8(rng, (8, 2), E5M2)
        ref = golden.gemm(A, B, chunk=None)
    else:
        A, B = random_binary16(rng, (4, 8)), random_binary16(rng, (8, 2))
        ref = golden.gemm(A, B, in_fmt, in_fmt, acc_fmt, chunk=None)
    got = run_gemm(array, A, B, chunk=None)
    assert np.array_equal(got, ref), (got, ref)

"""GEMMs larger than the buffers: the host driver's tile plan (every tile fits, the tiles cover
the GEMM once, K tiles end on chunk boundaries or carry the running chunk), and tiled GEMMs on
the RTL in Amaranth's simulator, bit-identical to ``golden.gemm`` on the whole matrices."""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.top import Accelerator
from fp8accel.sim import golden
from fp8accel.sim.host import AcceleratorHost
from fp8accel.sim.host.pysim import AmaranthTransport
from fp8accel.sim.host.tiling import DIM_MAX, plan_gemm
from fp8accel.sim.vectors import random_fp8

# The plan --------------------------------------------------------------------------------------

SHAPES = [(1, 1, 1), (5, 7, 13), (64, 3, 200), (3, 64, 200), (100, 100, 1000), (7, 1, 4096)]
BUILDS = [(1, 1, 256, 1024, 256), (2, 3, 8, 24, 8), (4, 4, 16, 64, 8), (8, 8, 2048, 16384, 2048)]
CHUNKS = [None, 1, 2, 8, 64, 1 << 15]


@pytest.mark.parametrize("build", BUILDS, ids=lambda b: "x".join(map(str, b)))
def test_every_tile_fits_and_the_tiles_cover_the_gemm(build):
    rows, cols, a_words, b_bytes, acc_words = build
    for (m, n, k), chunk in itertools.product(SHAPES, CHUNKS):
        plan = plan_gemm(m, n, k, rows=rows, cols=cols, a_words=a_words, b_bytes=b_bytes,
                         acc_words=acc_words, chunk=chunk)
        what = f"{m}x{n}x{k} chunk {chunk}: {plan}"
        assert max(plan.mt, plan.nt, plan.kt) <= DIM_MAX, what
        assert plan.mt * -(-plan.kt // rows) <= a_words, what
        assert plan.kt * plan.nt <= b_bytes, what
        assert plan.mt * -(-plan.nt // cols) <= acc_words, what
        covered = np.zeros((m, n), int)
        for m0, m1, n0, n1 in plan.output_tiles():
            covered[m0:m1, n0:n1] += 1
        assert (covered == 1).all(), what
        tiles = plan.k_tiles()
        assert [t.k0 for t in tiles] == list(range(0, k, plan.kt)), what
        assert tiles[-1].k1 == k and not tiles[-1].carry_out, what
        span = k if chunk is None or chunk >= k else chunk
        for before, t in zip(tiles, tiles[1:]):
            # A tile carries in exactly when the one before carried out, which it does
            # exactly when it ended inside a chunk.
            assert before.carry_out == t.carry_in == (t.k0 % span != 0), what
            assert t.accumulate != t.carry_in, what
        if plan.kt < k and span < k:
            if span <= plan.kt:
                assert plan.kt % span == 0, what       # tiles end on chunk boundaries
            else:
                assert span % plan.kt == 0, what       # a chunk is a whole number of tiles


def test_k_is_kept_whole_when_it_fits():
    plan = plan_gemm(256, 256, 256, rows=8, cols=8, a_words=1 << 13, b_bytes=1 << 16,
                     acc_words=1 << 13, chunk=64)
    assert (plan.mt, plan.nt, plan.kt, plan.tiles) == (256, 256, 256, 1)


def test_the_first_k_tile_accumulates_only_into_a_given_c():
    plan = plan_gemm(4, 4, 100, rows=2, cols=2, a_words=8, b_bytes=64, acc_words=8, chunk=None)
    assert [t.accumulate for t in plan.k_tiles()][0] is False
    assert [t.accumulate for t in plan.k_tiles(accumulate=True)][0] is True


@pytest.mark.parametrize("bad", [dict(m=0), dict(a_words=0), dict(chunk=3), dict(chunk=0),
                                 dict(rows=True)])
def test_bad_plans_are_refused(bad):
    args = dict(m=4, n=4, k=4, rows=2, cols=2, a_words=8, b_bytes=16, acc_words=8, chunk=4)
    args.update(bad)
    with pytest.raises(ValueError):
        plan_gemm(**args)


# Tiled GEMMs on the RTL ------------------------------------------------------------------------

def run_host(dut, body):
    """Run ``body(host)`` on ``dut`` in Amaranth's simulator; returns its result."""
    out = {}

    async def bench(ctx):
        host = AcceleratorHost(AmaranthTransport(ctx, dut))
        await host.reset()
        out["result"] = await body(host)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out["result"]


def near_one(rng, shape, fmt="e5m2"):
    """Operands of one sign and magnitude: every product lands in the same binade, so a sum
    that loses its running chunk at a tile edge rounds differently."""
    return golden.encode(rng.uniform(1.0, 2.0, shape), fmt)


def totals_only(A, B, kt, chunk, C=None):
    """What the accelerator would compute if a K tile carried only its total to the next."""
    for k0 in range(0, A.shape[1], kt):
        C = golden.gemm(A[:, k0:k0 + kt], B[k0:k0 + kt], chunk=chunk, C=C)
    return C


@pytest.mark.parametrize("chunk", [None, 32], ids=["no-chunk", "chunk-longer-than-tile"])
def test_k_tiles_inside_a_chunk_carry_it(chunk):
    """K = 40 in tiles of 8 on a 2x2 build with an 8-byte-per-column B buffer: the running
    chunk crosses four tile edges; carrying only the total would differ (checked too)."""
    rng = np.random.default_rng(0)
    A, B = near_one(rng, (2, 40)), near_one(rng, (40, 2))
    dut = Accelerator(2, 2, a_depth=16, b_depth=16, acc_depth=8)

    async def body(host):
        got = await host.run_gemm(A, B, chunk=chunk)
        return got, host.last_run

    (got, cycles, active), run = run_host(dut, body)
    assert run["tile"][2] == 8 and run["commands"] == 5
    exp = golden.gemm(A, B, chunk=chunk)
    np.testing.assert_array_equal(got, exp)
    assert (totals_only(A, B, 8, chunk) != exp).any(), "the data cannot tell carry from not"
    assert active == 5 * 4 * 2 and cycles >= active     # M rows in each of 4 passes
    assert run["cycles_total"] > cycles


def test_tiled_gemm_with_every_option():
    """M, N and K all tiled on a 2x3 build: transposed operands, E4M3 A, accumulate into C,
    chunk 4 with round-to-nearest-away, specials among the operands; then FP8 out."""
    rng = np.random.default_rng(3)
    m, n, k = 5, 7, 13
    A = random_fp8(rng, (m, k), "e4m3", specials=True)
    B = random_fp8(rng, (k, n), "e5m2", specials=True)
    C = golden.gemm(random_fp8(rng, (m, 3), "e5m2"), random_fp8(rng, (3, n), "e5m2"))
    dut = Accelerator(2, 3, a_depth=8, b_depth=24, acc_depth=8)
    opts = dict(a_fmt="e4m3", b_fmt="e5m2", chunk=4, rounding="rna")

    async def body(host):
        first = await host.run_gemm(np.ascontiguousarray(A.T), np.ascontiguousarray(B.T), C,
                                    transpose_a=True, transpose_b=True, **opts)
        plan = host.last_run
        second = await host.run_gemm(A, B, out_fmt="e5m2", **opts)
        return first, plan, second

    (got, _, _), plan, (got8, _, _) = run_host(dut, body)
    assert plan["commands"] > 4 and plan["tile"] != [m, n, k]
    np.testing.assert_array_equal(got, golden.gemm(A, B, "e4m3", "e5m2", chunk=4,
                                                   rounding="rna", C=C))
    np.testing.assert_array_equal(got8, golden.gemm(A, B, "e4m3", "e5m2", chunk=4,
                                                    rounding="rna", out_fmt="e5m2"))


def test_rows_beyond_k_keep_a_negative_zero_chunk():
    """K = 2 on a 3-row array: the pass's third row is beyond K. The chunk of the first two
    products is -0 (a sum below the smallest DLFLOAT16 normal, flushed with its sign), and
    -0 + -0 must stay -0 in the final total; a row beyond K that added +0 made it +0."""
    a = golden.encode(np.array([[1.5 * 2.0 ** -15, 1.25 * 2.0 ** -14]]), "e5m2")
    b = golden.encode(np.array([[-(2.0 ** -15)], [2.0 ** -16]]), "e5m2")
    C = np.array([[0x8000]], np.uint16)
    exp = golden.gemm(a, b, chunk=64, C=C)
    assert exp[0, 0] == 0x8000
    dut = Accelerator(3, 1, a_depth=4, b_depth=4, acc_depth=4)

    async def body(host):
        return await host.run_gemm(a, b, C, chunk=64)

    got, _, _ = run_host(dut, body)
    assert got[0, 0] == 0x8000


# Double buffering --------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk, with_c", [
    pytest.param(8, False, marks=pytest.mark.slow, id="chunk8"),
    pytest.param(None, True, marks=pytest.mark.slow, id="carry-c"),
])
def test_double_buffering_overlaps_and_stays_exact(chunk, with_c):
    """A GEMM large enough to be split on a double-buffered 2x2 build: its output tiles and
    K tiles alternate between the buffers (loads and READ_C beside a running START), the
    result is bit-identical, and the same GEMM on the build with one buffer of each kind takes
    more cycles from its first beat in to its last beat out."""
    rng = np.random.default_rng(11)
    m, n, k = 512, 8, 16      # transfers a third of the compute
    A, B = random_fp8(rng, (m, k), "e5m2"), random_fp8(rng, (k, n), "e4m3")
    C = golden.gemm(random_fp8(rng, (m, 2), "e5m2"), random_fp8(rng, (2, n), "e5m2")) \
        if with_c else None
    runs = {}
    for buffers in (2, 1):
        dut = Accelerator(2, 2, a_depth=4096, b_depth=128, acc_depth=2048, buffers=buffers)

        async def body(host):
            got = await host.run_gemm(A, B, C, b_fmt="e4m3", chunk=chunk)
            return got, host.last_run

        (got, cycles, active), run = run_host(dut, body)
        np.testing.assert_array_equal(got, golden.gemm(A, B, "e5m2", "e4m3", chunk=chunk,
                                                       C=C))
        runs[buffers] = run
    assert runs[2]["commands"] >= 4 and runs[1]["commands"] == 1, runs
    # The transfers of one tile ran beside another's command.
    assert runs[2]["cycles_total"] < 0.85 * runs[1]["cycles_total"], runs

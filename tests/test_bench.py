"""The golden model's fast GEMM path (sim/golden.py, numba) against its step-by-step NumPy
path, on data chosen to reach every case the fast path models or hands back (tiny products and
cancellations that flush to signed zeros, overflow to NaN, Inf and NaN operands, ``rna``,
accumulation into ``C``), and ``fp8accel bench golden`` (sim/bench.py)."""

import zlib

import numpy as np
import pytest

from fp8accel.sim import golden as G
from fp8accel.sim.experiments import bench
from fp8accel.sim.cli import main


def _reference(A, B, a_fmt, b_fmt, chunk, rounding, C):
    M, K = A.shape
    cl = min(chunk or K, K)
    total = np.zeros((M, B.shape[1]), np.int64) if C is None else C.astype(np.int64)
    return G._gemm_reference(A.astype(np.int64), B.astype(np.int64), a_fmt, b_fmt, G.DLFLOAT16,
                             cl, G.rounding_by_name(rounding), total)


def _operands(rng, kind, M, K, N, a_fmt, b_fmt):
    if kind == "tiny":          # products near and below 2**-31, sums that cancel
        a = rng.choice([-1, 1], (M, K)) * 2.0 ** rng.integers(-17, -12, (M, K))
        b = rng.choice([-1, 1], (K, N)) * 2.0 ** rng.integers(-17, -12, (K, N))
        a *= rng.choice([1, 1.25, 1.5, 1.75], a.shape)
    elif kind == "cancel":      # equal and opposite products
        a = rng.standard_normal((M, K))
        a[:, 1::2] = -a[:, ::2][:, :K // 2]
        b = np.repeat(rng.standard_normal((K // 2 + 1, N)), 2, axis=0)[:K]
        a *= 2.0 ** -14
    elif kind == "huge":        # partial sums beyond DLFLOAT16's range: NaN
        a = np.full((M, K), 50000.0) * rng.choice([1, -1], (M, K), p=[0.9, 0.1])
        b = np.full((K, N), 50000.0)
    else:
        a = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-8, 8)
        b = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-8, 8)
    A, B = G.encode(a, a_fmt, saturate=True), G.encode(b, b_fmt, saturate=True)
    if kind == "specials":
        A.flat[rng.integers(A.size)] = 0x7C if a_fmt is G.E5M2 else 0x7F   # Inf / NaN
    return A, B


@pytest.mark.parametrize("kind", ["random", "tiny", "cancel", "huge", "specials"])
def test_fast_path_is_bit_exact(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    for case in range(40):
        M, N = rng.integers(1, 9, 2)
        K = int(rng.integers(1, 300))
        a_fmt, b_fmt = (G.E5M2, G.E4M3)[rng.integers(2)], (G.E5M2, G.E4M3)[rng.integers(2)]
        A, B = _operands(rng, kind, M, K, N, a_fmt, b_fmt)
        chunk = [None, 1, 4, 16, 64, 5][rng.integers(6)]
        rounding = ["rne", "rna"][rng.integers(2)]
        C = None
        if rng.random() < 0.4:
            C = G.encode(rng.standard_normal((M, N)) * 2.0 ** rng.integers(-31, 4), G.DLFLOAT16)
            C.flat[0] = 0x8000                                              # -0
        got = G.gemm(A, B, a_fmt, b_fmt, G.DLFLOAT16, chunk, rounding, C)
        want = _reference(A, B, a_fmt, b_fmt, chunk, rounding, C)
        bad = np.argwhere(got.astype(np.int64) != want)
        assert bad.size == 0, (kind, case, M, K, N, a_fmt, b_fmt, chunk, rounding,
                               bad[:3].tolist())


def test_tiny_results_become_signed_zeros():
    """2**-16 * 2**-16 = 2**-32 is below DLFLOAT16's smallest value: the products are
    signed zeros and their sums +0."""
    t = G.encode(np.array([[2.0 ** -16, -(2.0 ** -16)]]), G.E5M2)
    got = G.gemm(t, np.array([[t[0, 0]], [t[0, 0]]], np.uint8).reshape(2, 1), chunk=None)
    assert got.tolist() == [[0]]
    neg = G.gemm(t[:, 1:], t[:, :1], chunk=None)
    assert neg.tolist() == [[0x0000]]      # add(+0 chunk start, -0) is +0


def test_bench_reports_ratio_and_bit_exactness():
    rows = bench.bench_golden(shapes=((32, 64, 16), (16, 128, 8)), repeat=1)
    assert [(r["m"], r["k"], r["n"]) for r in rows] == [(32, 64, 16), (16, 128, 8)]
    assert rows[0]["bit_exact"] is True
    for r in rows:
        assert r["golden_macs"] > 0 and r["matmul_macs"] > 0
        assert r["ratio"] == pytest.approx(r["golden_s"] / r["matmul_s"])


def test_cli_bench_bad_repeat_is_one_line(capsys):
    assert main(["bench", "golden", "--repeat", "0"]) == 2
    assert capsys.readouterr().err.strip() == "fp8accel bench: error: --repeat must be at " \
                                              "least 1, not 0"


def test_bench_torch_reports_speed_and_bit_exactness(monkeypatch, capsys):
    """``fp8accel bench torch``: sim.pt.gemm against golden.gemm and torch.matmul, bit for bit
    (on small shapes here; the figures of docs/training.md are from the default ones)."""
    pytest.importorskip("torch")
    rows = bench.bench_torch(shapes=((32, 256, 16),), repeat=1)
    (r,) = rows
    assert r["bit_exact"] is True and r["torch_macs"] > 0 and r["matmul_macs"] > 0
    assert r["speedup"] == pytest.approx(r["golden_s"] / r["torch_s"])
    monkeypatch.setattr(bench, "SHAPES", ((8, 16, 4),))
    assert main(["bench", "torch", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "8x16 by 16x4: sim.pt.gemm " in out and "bit-exact" in out
    assert main(["bench", "torch", "--no-reference"]) == 2
    assert capsys.readouterr().err.strip() == ("fp8accel bench: error: --no-reference is for "
                                               "bench golden")

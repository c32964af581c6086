"""``fp8accel bench golden``: throughput of the golden model's GEMM next to float32 matmul.

Emulated multiply-accumulates per second of :func:`sim.golden.gemm` (E5M2 operands, DLFLOAT16
accumulation, chunk 64, bit-exact) and of float32 ``numpy.matmul`` on the same shapes in the same
run, and their ratio. The 256^3 result is also computed by the step-by-step NumPy path
(``sim.golden._gemm_reference``) and compared bit for bit.
"""

import time

import numpy as np

from fp8accel.sim import golden

__all__ = ["SHAPES", "bench_golden", "add_bench_parser"]

#: (M, K, N)
SHAPES = ((256, 256, 256), (1024, 256, 1024))


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_golden(shapes=SHAPES, repeat=3, reference=True, seed=1):
    """A list of one dict per shape: ``golden_macs`` and ``matmul_macs`` (per second),
    ``ratio`` (matmul over golden), and for the first shape ``reference_macs`` and
    ``bit_exact``."""
    rng = np.random.default_rng(seed)
    golden.gemm(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))   # compile
    rows = []
    for i, (m, k, n) in enumerate(shapes):
        A = golden.encode(rng.standard_normal((m, k)), golden.E5M2, saturate=True)
        B = golden.encode(rng.standard_normal((k, n)), golden.E5M2, saturate=True)
        a32 = golden.decode(A, golden.E5M2).astype(np.float32)
        b32 = golden.decode(B, golden.E5M2).astype(np.float32)
        macs = m * k * n
        t_g = _best(lambda: golden.gemm(A, B, chunk=64), repeat)
        t_m = _best(lambda: np.matmul(a32, b32), max(repeat, 10))
        row = {"m": m, "k": k, "n": n, "golden_s": t_g, "matmul_s": t_m,
               "golden_macs": macs / t_g, "matmul_macs": macs / t_m, "ratio": t_g / t_m}
        if reference and i == 0:
            cl = 64
            t = time.perf_counter()
            ref = golden._gemm_reference(A.astype(np.int64), B.astype(np.int64), golden.E5M2,
                                         golden.E5M2, golden.DLFLOAT16, cl,
                                         golden.Rounding.RNE, np.zeros((m, n), np.int64))
            t_r = time.perf_counter() - t
            row["reference_macs"] = macs / t_r
            row["bit_exact"] = bool(np.array_equal(ref, golden.gemm(A, B, chunk=cl)))
        rows.append(row)
    return rows

"""``fp8accel bench golden|torch``: throughput of the golden model's GEMM next to float32
matmul.

``golden``: emulated multiply-accumulates per second of :func:`sim.golden.gemm` (E5M2 operands,
DLFLOAT16 accumulation, chunk 64, bit-exact) and of float32 ``numpy.matmul`` on the same shapes
in the same run, and their ratio. The 256^3 result is also computed by the step-by-step NumPy
path (``sim.golden._gemm_reference``) and compared bit for bit.

``torch``: the same for the PyTorch layer's GEMM, :func:`sim.pt.gemm` on ``uint8`` tensors
(codes out, compared bit for bit with ``golden.gemm``) and :func:`sim.pt.gemm_values` (the
float64 values a layer uses), next to ``golden.gemm`` and float32 ``torch.matmul``.
"""

import time

import numpy as np

from fp8accel.sim import golden

__all__ = ["SHAPES", "bench_golden", "bench_torch"]

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


def bench_torch(shapes=SHAPES, repeat=3, seed=1):
    """A list of one dict per shape: ``golden_macs``, ``torch_macs`` (:func:`sim.pt.gemm`),
    ``values_macs`` (:func:`sim.pt.gemm_values`) and ``matmul_macs`` (float32
    ``torch.matmul``) per second, ``speedup`` (golden time over ``sim.pt.gemm`` time),
    ``ratio`` (``sim.pt.gemm`` time over matmul time) and ``bit_exact``."""
    import torch

    from fp8accel.sim import pt
    rng = np.random.default_rng(seed)
    zeros = torch.zeros((2, 2), dtype=torch.uint8)
    golden.gemm(zeros.numpy(), zeros.numpy())
    pt.gemm(zeros, zeros)                                                  # compile
    rows = []
    for m, k, n in shapes:
        A = golden.encode(rng.standard_normal((m, k)), golden.E5M2, saturate=True)
        B = golden.encode(rng.standard_normal((k, n)), golden.E5M2, saturate=True)
        At, Bt = torch.from_numpy(A), torch.from_numpy(B)
        a32 = torch.from_numpy(golden.decode(A, golden.E5M2).astype(np.float32))
        b32 = torch.from_numpy(golden.decode(B, golden.E5M2).astype(np.float32))
        macs = m * k * n
        t_g = _best(lambda: golden.gemm(A, B, chunk=64), repeat)
        t_t = _best(lambda: pt.gemm(At, Bt, chunk=64), repeat)
        t_v = _best(lambda: pt.gemm_values(At, Bt, chunk=64), repeat)
        t_m = _best(lambda: torch.matmul(a32, b32), max(repeat, 10))
        rows.append({"m": m, "k": k, "n": n, "golden_s": t_g, "torch_s": t_t, "values_s": t_v,
                     "matmul_s": t_m, "golden_macs": macs / t_g, "torch_macs": macs / t_t,
                     "values_macs": macs / t_v, "matmul_macs": macs / t_m,
                     "speedup": t_g / t_t, "ratio": t_t / t_m,
                     "torch_threads": torch.get_num_threads(),
                     "bit_exact": bool(np.array_equal(pt.gemm(At, Bt, chunk=64).numpy(),
                                                      golden.gemm(A, B, chunk=64)))})
    return rows

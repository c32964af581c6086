"""``fp8accel bench golden``: throughput of the golden model's GEMM next to float32 matmul.

Emulated multiply-accumulates per second of :func:`sim.golden.gemm` (E5M2 operands, DLFLOAT16
accumulation, chunk 64, bit-exact) and of float32 ``numpy.matmul`` on the same shapes in the same
run, and their ratio. The 256^3 result is also computed by the step-by-step NumPy path
(``sim.golden._gemm_reference``) and compared bit for bit.
"""

import json
import os
import time

import numpy as np

from sim import golden
from sim.cli_util import check_output_file, positive_int, write_text

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


def _run_cli(args):
    if args.json is not None:
        check_output_file(args.json, "--json")
    rows = bench_golden(repeat=args.repeat, reference=not args.no_reference)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"golden.gemm (E5M2 x E5M2, DLFLOAT16, chunk 64) vs float32 numpy.matmul "
          f"(OMP_NUM_THREADS={threads}), best of {args.repeat}:")
    for r in rows:
        line = (f"  {r['m']}x{r['k']} by {r['k']}x{r['n']}: golden {r['golden_macs']:.3g} "
                f"MAC/s, matmul {r['matmul_macs']:.3g} MAC/s, ratio 1/{r['ratio']:.0f}")
        if "reference_macs" in r:
            line += (f"; step-by-step NumPy path {r['reference_macs']:.3g} MAC/s, "
                     f"{'bit-exact' if r['bit_exact'] else 'DIFFERENT'}")
        print(line)
    if args.json is not None:
        write_text(args.json, json.dumps(rows, indent=1))
    if any(not r.get("bit_exact", True) for r in rows):
        return 1
    return 0


def add_bench_parser(sub):
    p = sub.add_parser("bench", help="throughput of the golden model",
                       description="Throughput of golden.gemm (emulated MAC/s, bit-exact, "
                                   "chunk 64) on 256^3 and 1024x256 by 256x1024, next to "
                                   "float32 numpy.matmul in the same run.")
    p.add_argument("what", choices=["golden"], help="what to measure")
    p.add_argument("--repeat", type=positive_int("--repeat"), default=3,
                   help="timed runs per shape, the best counts (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the step-by-step NumPy path on 256^3 (about 2 s)")
    p.add_argument("--json", help="also write the figures here")
    p.set_defaults(func=_run_cli)

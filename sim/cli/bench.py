"""``fp8accel bench``: the command line of :mod:`fp8accel.sim.experiments.bench`."""

import json
import os

from fp8accel.sim.cli.util import CliError, check_output_file, positive_int
from fp8accel.sim.experiments import bench
from fp8accel.sim.experiments.bench import bench_golden, bench_torch
from fp8accel.sim.files import write_text

__all__ = ["add_bench_parser"]


def _run_torch(args):
    from fp8accel.sim.pt import require_torch
    try:
        torch = require_torch()
    except ImportError as exc:
        raise CliError(str(exc)) from None
    if args.no_reference:
        raise CliError("--no-reference is for bench golden")
    rows = bench_torch(bench.SHAPES, repeat=args.repeat)
    print(f"sim.pt.gemm (E5M2 x E5M2, DLFLOAT16, chunk 64) vs golden.gemm and float32 "
          f"torch.matmul ({torch.get_num_threads()} threads), best of {args.repeat}:")
    for r in rows:
        print(f"  {r['m']}x{r['k']} by {r['k']}x{r['n']}: sim.pt.gemm {r['torch_macs']:.3g} "
              f"MAC/s ({r['speedup']:.2f}x golden.gemm {r['golden_macs']:.3g}; gemm_values "
              f"{r['values_macs']:.3g}), torch.matmul {r['matmul_macs']:.3g} MAC/s, ratio "
              f"1/{r['ratio']:.0f}, {'bit-exact' if r['bit_exact'] else 'DIFFERENT'}")
    return rows


def _run_cli(args):
    if args.json is not None:
        check_output_file(args.json, "--json")
    if args.what == "torch":
        rows = _run_torch(args)
        if args.json is not None:
            write_text(args.json, json.dumps(rows, indent=1))
        return 0 if all(r["bit_exact"] for r in rows) else 1
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
                       description="Throughput of golden.gemm (golden) or of the PyTorch "
                                   "layer's sim.pt.gemm next to golden.gemm (torch; needs "
                                   "PyTorch): emulated MAC/s, bit-exact, chunk 64, on 256^3 "
                                   "and 1024x256 by 256x1024, next to float32 numpy.matmul or "
                                   "torch.matmul in the same run.")
    p.add_argument("what", choices=["golden", "torch"], help="what to measure")
    p.add_argument("--repeat", type=positive_int("--repeat"), default=3,
                   help="timed runs per shape, the best counts (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true",
                   help="golden: skip the step-by-step NumPy path on 256^3 (about 2 s)")
    p.add_argument("--json", help="also write the figures here")
    p.set_defaults(func=_run_cli)

"""``fp8accel study``: the command line of :mod:`fp8accel.sim.experiments.study`."""

import numpy as np

from fp8accel.sim.cli.util import (
    CliError,
    check_output_dir,
    int_arg,
    non_negative_int,
    positive_int,
)
from fp8accel.sim.experiments.study import DATA, PRODUCTS_MAX, run_study

__all__ = ["add_study_parser"]


def _run_cli(args):
    if args.trials << args.max_log2 > PRODUCTS_MAX:
        most = PRODUCTS_MAX >> args.max_log2
        raise CliError(f"--trials {args.trials} is too many for dot products of length "
                       f"2**{args.max_log2}: at most {most} (or a smaller --max-log2)")
    check_output_dir(args.out)
    results, best = run_study(args.out, args.max_log2, args.trials, args.seed)
    for d in DATA:
        print(f"{d}: best chunk per length " + ", ".join(f"2^{int(np.log2(k))}:{c}"
                                                       for k, c in best[d].items()))
    print(f"Wrote {args.out}/accumulation.md, accumulation.json and accumulation.png")
    return 0


def add_study_parser(sub):
    p = sub.add_parser("study", help="numerical studies of the accelerator's arithmetic",
                       description="Numerical studies. 'accumulation': relative error of long "
                                   "dot products for sequential and chunked DLFLOAT16 and "
                                   "float32, against float64.")
    p.add_argument("study", choices=["accumulation"], help="which study")
    p.add_argument("--out", default="results", help="output directory, created if missing "
                                                     "(default: %(default)s)")
    p.add_argument("--max-log2", type=int_arg("--max-log2", 4, 16), default=16,
                   help="longest dot product, 2**N (default: %(default)s)")
    p.add_argument("--trials", type=positive_int("--trials"), default=32,
                   help="dot products per length (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int("--seed"), default=1,
                   help="random seed (default: %(default)s)")
    p.set_defaults(func=_run_cli)

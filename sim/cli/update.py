"""``fp8accel update``: the SGD weight update on the accelerator top, simulated.

Builds ``hw.top.Accelerator`` as Verilog, runs it under cocotb (Verilator or Icarus) and streams
the vectors through its UPDATE action with :class:`sim.host.AcceleratorHost` (the job runner is
``run_job`` in :mod:`sim.tb.top`, shared with ``fp8accel gemm``). ``--check`` compares the
result bit for bit with ``sim.golden.sgd_update``.

Ref: docs/numerics.md section 5; docs/weight-update.md.
"""

import json
import sys
from pathlib import Path

import numpy as np

from fp8accel.sim.cli.util import (
    SIMULATORS,
    CliError,
    check_distinct_outputs,
    check_output_dir,
    check_output_file,
    load_codes,
    print_check,
    simulator,
    xorshift_seed,
)
from fp8accel.sim.files import atomic_output, write_text

__all__ = ["add_update_parser", "run_update_cli", "scalar_code"]

#: The top built for updates: the smallest array, small buffers (the update does not use
#: them), so that the build is quick.
_ROWS, _COLS, _DEPTHS = 2, 2, (64, 64, 64)


def scalar_code(text, flag):
    """A decimal number as a DLFLOAT16 code, rounded to nearest even (the issue's rule for
    the scalars of an update)."""
    from fp8accel.sim import golden
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"{flag} must be a decimal number, not {text!r}") from None
    if not np.isfinite(value):
        raise CliError(f"{flag} must be finite, not {text!r}")
    code = int(golden.encode(np.array(value), "dlfloat16", "rne"))
    if not np.isfinite(golden.decode(np.array(code), "dlfloat16")):
        raise CliError(f"{flag} {text} is beyond the largest DLFLOAT16 value")
    return code


def run_update_cli(args):
    from fp8accel.hw.top import UPDATE_MAX
    from fp8accel.sim import golden
    from fp8accel.sim.run.jobs import SimulationFailed, run_jobs

    rounding = args.rounding
    scalars = {name: scalar_code(getattr(args, name), flag) for name, flag in
               (("lr", "--lr"), ("momentum", "--momentum"),
                ("weight_decay", "--weight-decay"))}
    out_w = check_output_file(args.out_w, "--out-w", (".npy",))
    out_v = check_output_file(args.out_v, "--out-v", (".npy",))
    if args.json:
        check_output_file(args.json, "--json")
    check_distinct_outputs({"--out-w": args.out_w, "--out-v": args.out_v, "--json": args.json})
    check_output_dir(args.build_dir)
    w, g, v = (load_codes(path, what, np.uint16, "DLFLOAT16 codes") for path, what in
               ((args.w, "W"), (args.g, "G"), (args.v, "V")))
    if not w.shape == g.shape == v.shape:
        raise CliError(f"W, G and V must have one shape, not {w.shape}, {g.shape}, {v.shape}")
    if w.size > UPDATE_MAX:
        raise CliError(f"W has {w.size} elements; an UPDATE takes at most {UPDATE_MAX}")
    sim = simulator(args.sim)

    build_dir = (Path(args.build_dir) / f"update-{sim}").resolve()
    data = build_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, arr in (("w", w), ("g", g), ("v", v)):
        paths[name] = str(data / f"{name}.npy")
        np.save(paths[name], arr)
    job = {"name": "update", **paths, **scalars, "seed": args.seed, "rounding": rounding}
    try:
        # The job writes W and V under temporary names, renamed once both are complete.
        with atomic_output(out_w) as tmp_w, atomic_output(out_v) as tmp_v:
            job.update(out_w=str(tmp_w), out_v=str(tmp_v))
            report = run_jobs([], updates=[job], rows=_ROWS, cols=_COLS, sim=sim,
                              depths=_DEPTHS, build_dir=build_dir, command="update")
            if not (tmp_w.is_file() and tmp_v.is_file()):
                raise SimulationFailed(f"the job wrote no result; see "
                                        f"{build_dir / 'test.log'}")
    except SimulationFailed as exc:
        print(f"fp8accel update: the simulation failed: {exc}", file=sys.stderr)
        return 1
    u = report["updates"][0]
    result = {"elements": int(w.size), "shape": list(w.shape), "rounding": rounding,
              "seed": args.seed, "rbits": report["config"]["update_rbits"],
              **{f"{k}_code": c for k, c in scalars.items()}, "sim": sim,
              "cycles": u["cycles"], "rng_state": u["rng_state"],
              "build_s": round(report["build_s"], 3), "sim_s": round(report["sim_s"], 3),
              "out_w": str(out_w), "out_v": str(out_v)}
    status = 0
    if args.check:
        ew, ev = golden.sgd_update(w, g, v, scalars["lr"], scalars["momentum"],
                                   scalars["weight_decay"], args.seed, rounding,
                                   result["rbits"])
        bad = int(np.count_nonzero(np.load(out_w) != ew) + np.count_nonzero(np.load(out_v) != ev))
        result["check"] = {"mismatches": bad, "results": 2 * int(w.size)}
        status = 1 if bad else 0
    if args.json:
        write_text(args.json, json.dumps(result, indent=1) + "\n")
    print(f"Updated {w.size} weights ({rounding}, seed {args.seed}): W to {out_w}, V to {out_v}; "
          f"{u['cycles']} cycles, next seed {u['rng_state']} (build {report['build_s']:.1f} s, "
          f"simulation {report['sim_s']:.1f} s)")
    if args.check:
        print_check(result, "sim.golden.sgd_update")
    return status


def add_update_parser(sub):
    p = sub.add_parser(
        "update", help="run the SGD weight update on the simulated accelerator",
        description="Build the accelerator top (Verilator or Icarus) and run SGD with momentum "
                    "and weight decay on it (docs/numerics.md section 5): per element three "
                    "fused multiply-adds rounded stochastically (or rne) to DLFLOAT16, random "
                    "bits from xorshift32 started at --seed. W, G and V are .npy files of "
                    "DLFLOAT16 codes (uint16) of one shape; the scalars are decimal numbers, "
                    "rounded to DLFLOAT16 (rne).")
    p.add_argument("--w", required=True, metavar="W.npy", help="weights")
    p.add_argument("--g", required=True, metavar="G.npy", help="gradient")
    p.add_argument("--v", required=True, metavar="V.npy", help="momentum")
    p.add_argument("--lr", required=True, metavar="X", help="learning rate")
    p.add_argument("--momentum", required=True, metavar="X", help="momentum factor")
    p.add_argument("--weight-decay", required=True, metavar="X", help="weight decay")
    p.add_argument("--seed", required=True, type=xorshift_seed, metavar="S",
                   help="start of the random stream, 1 to 2**32 - 1; the report's rng_state "
                        "continues it")
    p.add_argument("--rounding", default="sr", type=str.lower, choices=("sr", "rne"),
                   help="sr or rne (default: %(default)s)")
    p.add_argument("--out-w", required=True, metavar="W1.npy", help="where the new W goes")
    p.add_argument("--out-v", required=True, metavar="V1.npy", help="where the new V goes")
    p.add_argument("--sim", default="verilator", type=str.lower, choices=SIMULATORS,
                   help="verilator or icarus (default: %(default)s)")
    p.add_argument("--json", metavar="R.json", help="write a report: cycles, seed and the "
                                                    "state that continues it, timings")
    p.add_argument("--check", action="store_true",
                   help="compare with sim.golden.sgd_update; exit 1 on any difference")
    p.add_argument("--build-dir", default="build/cocotb",
                   help="where the simulator builds go (default: %(default)s)")
    p.set_defaults(func=run_update_cli)

"""``fp8accel update``: the SGD weight update on the accelerator top, simulated.

Builds ``hw.top.Accelerator`` as Verilog, runs it under cocotb (Verilator or Icarus) and streams
the vectors through its UPDATE action with :class:`sim.host.AcceleratorHost` (the job runner is
``run_job`` in :mod:`sim.tb.top`, shared with ``fp8accel gemm``). ``--check`` compares the
result bit for bit with ``sim.golden.sgd_update``.

Ref: NUMERICS.md section 5; docs/weight-update.md.
"""

import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["add_update_parser", "run_update_cli", "scalar_code"]

#: The top built for updates: the smallest array, small buffers (the update does not use
#: them), so that the build is quick.
_ROWS, _COLS, _DEPTHS = 2, 2, (64, 64, 64)


def scalar_code(text, flag):
    """A decimal number as a DLFLOAT16 code, rounded to nearest even (the issue's rule for
    the scalars of an update)."""
    from sim import golden
    from sim.gemm_cli import _cli_error
    try:
        value = float(text)
    except ValueError:
        raise _cli_error()(f"{flag} must be a decimal number, not {text!r}") from None
    if not np.isfinite(value):
        raise _cli_error()(f"{flag} must be finite, not {text!r}")
    code = int(golden.encode(np.array(value), "dlfloat16", "rne"))
    if not np.isfinite(golden.decode(np.array(code), "dlfloat16")):
        raise _cli_error()(f"{flag} {text} is beyond the largest DLFLOAT16 value")
    return code


def _load_vector(path, what):
    from sim.gemm_cli import _cli_error
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _cli_error()(f"cannot read {what} from {path}: {exc}") from None
    if arr.dtype.kind not in "ui":
        raise _cli_error()(f"{what} ({path}) must hold DLFLOAT16 codes (uint16), not "
                           f"{arr.dtype}")
    if arr.size == 0:
        raise _cli_error()(f"{what} ({path}) is empty (shape {arr.shape})")
    if arr.min() < 0 or arr.max() > 0xFFFF:
        raise _cli_error()(f"{what} ({path}) holds values outside 0..65535")
    return arr.astype(np.uint16)


def _out_path(text, flag):
    from sim.gemm_cli import _cli_error
    path = Path(text)
    if path.suffix != ".npy":
        raise _cli_error()(f"{flag} must name a .npy file, not {text!r}")
    if not path.parent.resolve().is_dir():
        raise _cli_error()(f"the directory of {flag} ({path.parent}) does not exist")
    return path


def run_update_cli(args):
    from hw.top import UPDATE_MAX
    from sim import golden
    from sim.gemm_cli import _SimulationFailed, _choice, _cli_error, _simulator, run_jobs
    CliError = _cli_error()

    rounding = _choice(args.rounding, ("sr", "rne"), "--rounding")
    if not 0 < args.seed < 1 << 32:
        raise CliError(f"--seed must be from 1 to 2**32 - 1 (xorshift32 never leaves 0), "
                       f"not {args.seed}")
    scalars = {name: scalar_code(getattr(args, name), flag) for name, flag in
               (("lr", "--lr"), ("momentum", "--momentum"),
                ("weight_decay", "--weight-decay"))}
    out_w, out_v = _out_path(args.out_w, "--out-w"), _out_path(args.out_v, "--out-v")
    if out_w.resolve() == out_v.resolve():
        raise CliError("--out-w and --out-v name the same file")
    if args.json and not Path(args.json).parent.resolve().is_dir():
        raise CliError(f"the directory of --json ({Path(args.json).parent}) does not exist")
    w, g, v = (_load_vector(path, what) for path, what in
               ((args.w, "W"), (args.g, "G"), (args.v, "V")))
    if not w.shape == g.shape == v.shape:
        raise CliError(f"W, G and V must have one shape, not {w.shape}, {g.shape}, {v.shape}")
    if w.size > UPDATE_MAX:
        raise CliError(f"W has {w.size} elements; an UPDATE takes at most {UPDATE_MAX}")
    sim = _simulator(args.sim)

    build_dir = (Path(args.build_dir) / f"update-{sim}").resolve()
    data = build_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, arr in (("w", w), ("g", g), ("v", v)):
        paths[name] = str(data / f"{name}.npy")
        np.save(paths[name], arr)
    job = {"name": "update", **paths, **scalars, "seed": args.seed, "rounding": rounding,
           "out_w": str(out_w.resolve()), "out_v": str(out_v.resolve())}
    try:
        report = run_jobs([], updates=[job], rows=_ROWS, cols=_COLS, sim=sim, depths=_DEPTHS,
                          build_dir=build_dir, command="update")
    except _SimulationFailed as exc:
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
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"Updated {w.size} weights ({rounding}, seed {args.seed}): W to {out_w}, V to {out_v}; "
          f"{u['cycles']} cycles, next seed {u['rng_state']} (build {report['build_s']:.1f} s, "
          f"simulation {report['sim_s']:.1f} s)")
    if args.check:
        if status:
            print(f"CHECK FAILED: {result['check']['mismatches']} of {result['check']['results']}"
                  f" results differ from sim.golden.sgd_update")
        else:
            print("Check: every result matches sim.golden.sgd_update bit for bit.")
    return status


def add_update_parser(sub):
    from sim.gemm_cli import _one_line_errors
    p = sub.add_parser(
        "update", help="run the SGD weight update on the simulated accelerator",
        description="Build the accelerator top (Verilator or Icarus) and run SGD with momentum "
                    "and weight decay on it (NUMERICS.md section 5): per element three fused "
                    "multiply-adds rounded stochastically (or rne) to DLFLOAT16, random bits "
                    "from xorshift32 started at --seed. W, G and V are .npy files of DLFLOAT16 "
                    "codes (uint16) of one shape; the scalars are decimal numbers, rounded to "
                    "DLFLOAT16 (rne).")
    p.add_argument("--w", required=True, metavar="W.npy", help="weights")
    p.add_argument("--g", required=True, metavar="G.npy", help="gradient")
    p.add_argument("--v", required=True, metavar="V.npy", help="momentum")
    p.add_argument("--lr", required=True, metavar="X", help="learning rate")
    p.add_argument("--momentum", required=True, metavar="X", help="momentum factor")
    p.add_argument("--weight-decay", required=True, metavar="X", help="weight decay")
    p.add_argument("--seed", required=True, type=int, metavar="S",
                   help="start of the random stream, 1 to 2**32 - 1; the report's rng_state "
                        "continues it")
    p.add_argument("--rounding", default="sr", help="sr or rne (default: %(default)s)")
    p.add_argument("--out-w", required=True, metavar="W1.npy", help="where the new W goes")
    p.add_argument("--out-v", required=True, metavar="V1.npy", help="where the new V goes")
    p.add_argument("--sim", default="verilator", help="verilator or icarus "
                                                      "(default: %(default)s)")
    p.add_argument("--json", metavar="R.json", help="write a report: cycles, seed and the "
                                                    "state that continues it, timings")
    p.add_argument("--check", action="store_true",
                   help="compare with sim.golden.sgd_update; exit 1 on any difference")
    p.add_argument("--build-dir", default="build/cocotb",
                   help="where the simulator builds go (default: %(default)s)")
    _one_line_errors(p, "update")
    p.set_defaults(func=run_update_cli)

"""``fp8accel gemm`` and ``fp8accel demo``: GEMMs on the accelerator top, simulated or on a
board.

Both build ``hw.top.Accelerator`` as Verilog, run it under cocotb (Verilator or Icarus) and drive
it with :class:`sim.host.AcceleratorHost`, the same driver a board uses; the cocotb side is
``run_job`` in :mod:`sim.tb.top`, which reads the operands from ``.npy`` files, writes the
results and a report of counters and timings. ``fp8accel gemm --device PORT`` runs the same
host on a board built by ``fp8accel build``, through the UART bridge (:mod:`sim.link`). Every
result can be checked bit for bit against ``sim.golden.gemm``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from fp8accel.sim.cli.util import (
    SIMULATORS,
    CliError,
    array_size,
    check_distinct_outputs,
    check_int,
    check_output_dir,
    check_output_file,
    STREAM_WIDTHS,
    chunk_arg,
    int_choice,
    load_codes,
    non_negative_int,
    positive_float,
    positive_int,
    print_check,
    simulator,
    xorshift_seed,
)
from fp8accel.sim.files import atomic_output, save_npy, write_text
from fp8accel.sim.run.jobs import SimulationFailed, depths_for, run_jobs

__all__ = ["add_gemm_parser", "add_demo_parser", "run_gemm_cli", "run_demo_cli"]

_FMTS = ("e5m2", "e4m3")
_OUT_FMTS = ("dlfloat16", "e5m2", "e4m3")
#: M, N and K: 16-bit registers.
_DIM_MAX = 65535


# Checking arguments ------------------------------------------------------------------------------

def _gemm_on_device(args, A, B, C, opts, out, shape):
    """``fp8accel gemm --device``: the GEMM on a board, through the UART bridge."""
    import asyncio

    from fp8accel.sim.host import AcceleratorError, AcceleratorHost
    from fp8accel.sim.host.link import BridgeTransport, SerialLink

    baud = 1_000_000 if args.baud is None else args.baud
    clock_mhz = 12.0 if args.clock_mhz is None else args.clock_mhz
    m, n, k = shape
    host_opts = {**opts, "out_fmt": None if opts["out_fmt"] == "dlfloat16" else opts["out_fmt"]}

    async def job():
        try:
            link = SerialLink(args.device, baud)
        except (ConnectionError, ValueError) as exc:
            raise CliError(str(exc)) from None
        with link:
            host = AcceleratorHost(BridgeTransport(link, clock_hz=clock_mhz * 1e6))
            print(f"fp8accel gemm: connecting to {args.device} at {baud} baud ...",
                  file=sys.stderr, flush=True)
            await host.reset()
            cfg = await host.config()
            print(f"fp8accel gemm: a {cfg['rows']}x{cfg['cols']} accelerator; loading "
                  f"{m}x{k} and {k}x{n} operands ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            result, cycles, active = await host.run_gemm(A, B, C, **host_opts)
            return cfg, result, cycles, active, time.perf_counter() - t0, host.last_run

    try:
        cfg, result, cycles, active, seconds, run = asyncio.run(job())
    except (AcceleratorError, TimeoutError) as exc:
        print(f"fp8accel gemm: the device failed: {exc}", file=sys.stderr)
        return 1
    if out is not None:
        save_npy(out, result)
    rows, cols = cfg["rows"], cfg["cols"]
    util = m * n * k / (rows * cols * cycles) if cycles else 0.0
    report = {"m": m, "n": n, "k": k, "rows": rows, "cols": cols, "device": args.device,
              "baud": baud, "options": opts, "cycles": cycles, "active": active,
              "utilization": util, "cycles_total": run["cycles_total"],
              "end_to_end_utilization": (None if run["cycles_total"] is None else
                                         m * n * k / (rows * cols * run["cycles_total"])),
              "tile": run["tile"], "commands": run["commands"], "seconds": round(seconds, 3),
              "out": None if out is None else str(out)}
    status = 0
    if args.check:
        exp = _golden(A, B, C, opts)
        bad = int(np.count_nonzero(result != exp))
        report["check"] = {"mismatches": bad, "results": int(exp.size)}
        status = 1 if bad else 0
    if args.json:
        write_text(args.json, json.dumps(report, indent=1) + "\n")
    print(f"C ({m}x{n}, {opts['out_fmt']}) {_written(out)}: {cycles} cycles, {active} active, "
          f"utilization {util:.3f} on the {rows}x{cols} board ({seconds:.1f} s with transfers)")
    if args.check:
        print_check(report, "sim.golden.gemm")
    return status


def _written(out):
    """Where the summary line says C went: ``--out``, or nowhere."""
    return "not written (no --out)" if out is None else f"written to {out}"


def _golden(A, B, C, opts):
    from fp8accel.sim import golden
    A = A.T if opts["transpose_a"] else A
    B = B.T if opts["transpose_b"] else B
    out = opts["out_fmt"]
    return golden.gemm(A, B, opts["a_fmt"], opts["b_fmt"], "dlfloat16", opts["chunk"],
                       opts["rounding"], C=C, out_fmt=None if out == "dlfloat16" else out)


# fp8accel gemm -----------------------------------------------------------------------------------

def run_gemm_cli(args):
    opts = {"a_fmt": args.a_fmt, "b_fmt": args.b_fmt, "chunk": chunk_arg(args.chunk),
            "rounding": args.rounding, "transpose_a": args.transpose_a,
            "transpose_b": args.transpose_b, "out_fmt": args.out_fmt}
    rows, cols = args.rows, args.cols
    if args.device is not None and (rows is not None or cols is not None):
        raise CliError("--rows and --cols build a simulated top; a board reports its own "
                       "array (leave them out with --device)")
    if args.device is not None and args.stream_width is not None:
        raise CliError("--stream-width builds a simulated top; a board's ports are its own "
                       "(leave it out with --device)")
    if args.device is None and (args.baud is not None or args.clock_mhz is not None):
        raise CliError("--baud and --clock-mhz apply to --device only")
    if args.random is not None:
        if args.a or args.b:
            raise CliError("--random generates A and B: give either --random or --a and --b")
        for name, v in zip("MNK", args.random):
            check_int(v, f"--random {name}", 1, _DIM_MAX)
    elif not args.a or not args.b:
        raise CliError("give the operands with --a and --b, or --random M N K")
    out = None if args.out is None else check_output_file(args.out, "--out", (".npy",))
    if args.json:
        check_output_file(args.json, "--json")
    check_distinct_outputs({"--out": args.out, "--json": args.json})
    if args.device is None:
        check_output_dir(args.build_dir)
    if args.random is not None:
        m, n, k = args.random
        from fp8accel.sim.vectors import random_fp8
        rng = np.random.default_rng(args.seed)
        A = random_fp8(rng, (m, k), opts["a_fmt"], specials=False)
        B = random_fp8(rng, (k, n), opts["b_fmt"], specials=False)
        A = np.ascontiguousarray(A.T) if opts["transpose_a"] else A
        B = np.ascontiguousarray(B.T) if opts["transpose_b"] else B
    else:
        A = load_codes(args.a, "A", np.uint8, ndim=2)
        B = load_codes(args.b, "B", np.uint8, ndim=2)
    m, k = A.shape[::-1] if opts["transpose_a"] else A.shape
    kb, n = B.shape[::-1] if opts["transpose_b"] else B.shape
    if kb != k:
        raise CliError(f"A is {m}x{k} and B is {kb}x{n} (after --transpose-*): they do not "
                       f"form a matrix product")
    if max(m, n, k) > _DIM_MAX:
        raise CliError(f"M, N and K must be at most {_DIM_MAX} (16-bit registers), not "
                       f"{m}, {n}, {k}")
    C = None
    if args.c:
        C = load_codes(args.c, "C", np.uint16, ndim=2)
        if C.shape != (m, n):
            raise CliError(f"C has shape {C.shape}, expected {(m, n)}")
    if args.device is not None:
        return _gemm_on_device(args, A, B, C, opts, out, (m, n, k))
    rows = 4 if rows is None else rows
    cols = 4 if cols is None else cols
    sim = simulator(args.sim)
    # A build sized to the GEMM by default; with --buffers, a fixed build that the host
    # driver tiles the GEMM onto.
    depths = tuple(args.buffers) if args.buffers else depths_for(m, n, k, rows, cols)

    width = args.stream_width or 64
    build_dir = (Path(args.build_dir) / f"cli-{sim}-{rows}x{cols}-"
                 f"{'-'.join(map(str, depths))}{'' if width == 64 else f'-w{width}'}").resolve()
    data = build_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "a.npy", A)
    np.save(data / "b.npy", B)
    if C is not None:
        np.save(data / "c.npy", C)
    job = {"name": "gemm", "a": str(data / "a.npy"), "b": str(data / "b.npy"),
           "c": str(data / "c.npy") if C is not None else None,
           "opts": {**opts, "out_fmt": None if opts["out_fmt"] == "dlfloat16"
                    else opts["out_fmt"]}}
    # Without --out, C goes to the build directory only, where --check reads it.
    result_path = data / "result.npy" if out is None else out
    try:
        # The job writes C under a temporary name, renamed to --out once it is complete.
        with atomic_output(result_path) as tmp:
            job["out"] = str(tmp)
            report = run_jobs([job], rows=rows, cols=cols, sim=sim, depths=depths,
                              build_dir=build_dir, stream_width=width)
            if not tmp.is_file():
                raise SimulationFailed(f"the job wrote no result; see {build_dir / 'test.log'}")
    except SimulationFailed as exc:
        print(f"fp8accel gemm: the simulation failed: {exc}", file=sys.stderr)
        return 1
    g = report["gemms"][0]
    result = {"m": m, "n": n, "k": k, "rows": rows, "cols": cols, "sim": sim,
              "options": opts, "depths": report["depths"], "stream_width": width,
              "cycles": g["cycles"], "active": g["active"], "utilization": g["utilization"],
              "cycles_total": g["cycles_total"],
              "end_to_end_utilization": g["end_to_end_utilization"],
              "tile": g["tile"], "commands": g["commands"],
              "convert_s": round(report["convert_s"], 3), "build_s": round(report["build_s"], 3),
              "sim_s": round(report["sim_s"], 3), "gemm_s": round(g["seconds"], 3),
              "sim_cycles_per_s": round(g["cycles_per_s"]),
              "out": None if out is None else str(out)}
    status = 0
    if args.check:
        got = np.load(result_path)
        exp = _golden(A, B, C, opts)
        bad = int(np.count_nonzero(got != exp))
        result["check"] = {"mismatches": bad, "results": int(exp.size)}
        if bad:
            status = 1
    if args.json:
        write_text(args.json, json.dumps(result, indent=1) + "\n")
    tiles = "" if g["commands"] == 1 else (f", in {g['commands']} tiles of "
                                           f"{'x'.join(map(str, g['tile']))} (M x N x K)")
    print(f"C ({m}x{n}, {opts['out_fmt']}) {_written(out)}: {g['cycles']} cycles, "
          f"{g['active']} active, utilization {g['utilization']:.3f} on {rows}x{cols}{tiles}; "
          f"first beat in to last beat out {g['cycles_total']} cycles, utilization "
          f"{g['end_to_end_utilization']:.3f} (build {report['build_s']:.1f} s, simulation "
          f"{report['sim_s']:.1f} s)")
    if args.check:
        print_check(result, "sim.golden.gemm")
    return status


def add_gemm_parser(sub):
    p = sub.add_parser(
        "gemm", help="run one GEMM on the simulated accelerator",
        description="Build the accelerator top (Verilator or Icarus), run C = A B (+ C) on it "
                    "through the host driver and write C to --out. Operands are .npy files of "
                    "FP8 codes (uint8); C is accumulator (DLFLOAT16, uint16) or FP8 codes. A "
                    "transposed operand is given as stored: --transpose-a takes A.T (K x M).")
    p.add_argument("--a", metavar="A.npy", help="A (M x K, or K x M with --transpose-a)")
    p.add_argument("--b", metavar="B.npy", help="B (K x N, or N x K with --transpose-b)")
    p.add_argument("--c", metavar="C.npy", help="accumulate into these DLFLOAT16 codes (M x N)")
    p.add_argument("--out", metavar="OUT.npy",
                   help="where C goes (default: not written; --check and the summary still "
                        "run)")
    p.add_argument("--a-fmt", default="e5m2", type=str.lower, choices=_FMTS,
                   help="e5m2 or e4m3 (default: %(default)s)")
    p.add_argument("--b-fmt", default="e5m2", type=str.lower, choices=_FMTS,
                   help="e5m2 or e4m3 (default: %(default)s)")
    p.add_argument("--chunk", default="64", help="chunk length, a power of two up to 32768, "
                                                 "or 'none' (default: %(default)s)")
    p.add_argument("--rounding", default="rne", type=str.lower, choices=("rne", "rna"),
                   help="accumulation rounding, rne or rna (default: %(default)s)")
    p.add_argument("--transpose-a", action="store_true", help="A.npy holds A transposed")
    p.add_argument("--transpose-b", action="store_true", help="B.npy holds B transposed")
    p.add_argument("--out-fmt", default="dlfloat16", type=str.lower, choices=_OUT_FMTS,
                   help="dlfloat16, e5m2 or e4m3 (default: %(default)s)")
    p.add_argument("--rows", type=array_size("--rows"), default=None,
                   help="array rows (default: 4)")
    p.add_argument("--cols", type=array_size("--cols"), default=None,
                   help="array columns (default: 4)")
    p.add_argument("--sim", default="verilator", type=str.lower, choices=SIMULATORS,
                   help="verilator or icarus (default: %(default)s)")
    p.add_argument("--buffers", type=positive_int("--buffers"), nargs=3, default=None,
                   metavar=("A_WORDS", "B_BYTES", "ACC_WORDS"),
                   help="build the top with these buffer sizes (a board's, e.g. the ULX3S's "
                        "2048 16384 2048) and run the GEMM in tiles that fit them (default: "
                        "buffers sized to the GEMM)")
    p.add_argument("--stream-width", type=int_choice("--stream-width", STREAM_WIDTHS),
                   default=None, metavar="W",
                   help="bits per beat of the top's stream ports: 16, 32, 64, 128 or 256 "
                        "(default: %(default)s)")
    p.add_argument("--device", metavar="PORT",
                   help="run on a board built by 'fp8accel build' behind this serial port "
                        "(/dev/ttyUSB0, COM3, or a pyserial URL such as socket://host:port) "
                        "instead of simulating")
    p.add_argument("--baud", type=positive_int("--baud"), default=None,
                   help="with --device: the board's UART rate (default: 1000000)")
    p.add_argument("--clock-mhz", type=positive_float("--clock-mhz"), default=None,
                   help="with --device: the board's clock, for timeouts and the report "
                        "(default: 12, the slowest supported board)")
    p.add_argument("--json", metavar="R.json", help="write a report: cycles, utilization, "
                                                    "configuration, timings")
    p.add_argument("--random", type=int, nargs=3, metavar=("M", "N", "K"),
                   help="random operands of this shape instead of --a and --b")
    p.add_argument("--seed", type=non_negative_int("--seed"), default=1,
                   help="seed of --random (default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="compare with sim.golden.gemm; exit 1 on any difference")
    p.add_argument("--build-dir", default="build/cocotb",
                   help="where the simulator builds go (default: %(default)s)")
    p.set_defaults(func=run_gemm_cli)


# fp8accel demo -----------------------------------------------------------------------------------

def _rel_error(codes, fmt, exact):
    from fp8accel.sim import golden
    got = golden.decode(codes, fmt)
    return float(np.linalg.norm(got - exact) / np.linalg.norm(exact))


def run_demo_cli(args):
    from fp8accel.sim import golden
    rows, cols = args.rows, args.cols
    chunk = chunk_arg(args.chunk)
    if not (np.isfinite(args.lr) and 0 < args.lr < 1):
        raise CliError(f"--lr must be a number between 0 and 1, not {args.lr:g}")
    check_output_dir(args.build_dir)
    sim = simulator(args.sim)
    bsz, d_in, d_out = args.batch, args.d_in, args.d_out

    # One step of a linear layer Y = X W: activations after a ReLU (non-negative, which is
    # where long sums lose the most to swamping), weights ~ N(0, 1/d_in), small gradients.
    # Forward operands in E4M3, gradients in E5M2 (the usual FP8 training split).
    rng = np.random.default_rng(args.seed)
    X = golden.encode(np.maximum(rng.standard_normal((bsz, d_in)), 0) + 0.1, "e4m3",
                      saturate=True)
    # The master weights are DLFLOAT16; the GEMMs use their E4M3 copy.
    W16 = golden.encode(rng.standard_normal((d_in, d_out)) / np.sqrt(d_in), "dlfloat16")
    W = golden.convert(W16, "dlfloat16", "e4m3", "rne", saturate=True)
    dY = golden.encode(rng.standard_normal((bsz, d_out)) * 0.01 + 0.005, "e5m2",
                       saturate=True)
    V16 = np.zeros_like(W16)
    arrays = {"x": X, "w": W, "dy": dY, "w16": W16, "v16": V16}
    # (name, A as stored, B as stored, options, logical A, logical B)
    steps = [
        ("forward   Y = X W", "x", "w", dict(a_fmt="e4m3", b_fmt="e4m3"), X, W),
        ("backward dX = dY W^T", "dy", "w", dict(a_fmt="e5m2", b_fmt="e4m3", transpose_b=True),
         dY, W.T),
        ("weights  dW = X^T dY", "x", "dy", dict(a_fmt="e4m3", b_fmt="e5m2", transpose_a=True),
         X.T, dY),
    ]
    shapes = [(a.shape[0], a.shape[1], b.shape[1]) for *_, a, b in steps]
    depths = tuple(max(d) for d in zip(*(depths_for(m, n, k, rows, cols)
                                          for m, k, n in shapes)))
    build_dir = (Path(args.build_dir) / f"demo-{sim}-{rows}x{cols}-"
                 f"{'-'.join(map(str, depths))}").resolve()
    data = build_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(data / f"{name}.npy", arr)
    jobs = []
    for i, (name, a, b, opts, _, _) in enumerate(steps):
        full = {"a_fmt": "e5m2", "b_fmt": "e5m2", "chunk": chunk, "rounding": "rne",
                "transpose_a": False, "transpose_b": False, "out_fmt": None, **opts}
        jobs.append({"name": name, "a": str(data / f"{a}.npy"), "b": str(data / f"{b}.npy"),
                     "c": None, "out": str(data / f"out{i}.npy"), "opts": full})
    # Then SGD on the master weights with the weight gradient just computed (the third
    # GEMM's result), rounded stochastically.
    lr = int(golden.encode(np.array(args.lr), "dlfloat16"))
    mu = int(golden.encode(np.array(0.9), "dlfloat16"))
    update = {"name": "update W", "w": str(data / "w16.npy"), "g": jobs[2]["out"],
              "v": str(data / "v16.npy"), "lr": lr, "momentum": mu, "weight_decay": 0,
              "seed": args.seed, "rounding": "sr", "out_w": str(data / "w16_new.npy"),
              "out_v": str(data / "v16_new.npy")}
    print(f"fp8accel demo: one training step of a {d_in} -> {d_out} linear layer, batch {bsz}, "
          f"on a {rows}x{cols} array ({sim}), chunk {chunk}")
    start = time.monotonic()
    try:
        report = run_jobs(jobs, rows=rows, cols=cols, sim=sim, depths=depths,
                          build_dir=build_dir, command="demo", updates=[update])
    except SimulationFailed as exc:
        print(f"fp8accel demo: the simulation failed: {exc}", file=sys.stderr)
        return 1
    total = time.monotonic() - start

    header = (f"{'GEMM':<22} {'M x K x N':>14} {'mismatch':>9} {'cycles':>8} {'util':>6} "
              f"{'total':>8} {'e2e':>6} {'err chunk ' + str(chunk):>16} {'err no chunk':>13}")
    print(header)
    print("-" * len(header))
    bad_total = 0
    for (name, a, b, opts, A, B), job, g in zip(steps, jobs, report["gemms"]):
        full = job["opts"]
        got = np.load(job["out"])
        exp = golden.gemm(A, B, full["a_fmt"], full["b_fmt"], "dlfloat16", chunk, "rne")
        bad = int(np.count_nonzero(got != exp))
        bad_total += bad
        exact = golden.decode(A, full["a_fmt"]) @ golden.decode(B, full["b_fmt"])
        unchunked = golden.gemm(A, B, full["a_fmt"], full["b_fmt"], "dlfloat16", None, "rne")
        shape = f"{g['m']}x{g['k']}x{g['n']}"
        print(f"{name:<22} {shape:>14} {bad:>9} {g['cycles']:>8} {g['utilization']:>6.3f} "
              f"{g['cycles_total']:>8} {g['end_to_end_utilization']:>6.3f} "
              f"{_rel_error(got, 'dlfloat16', exact):>16.2e} "
              f"{_rel_error(unchunked, 'dlfloat16', exact):>13.2e}")
    macs = rows * cols * sum(g["cycles_total"] for g in report["gemms"])
    work = sum(g["m"] * g["n"] * g["k"] for g in report["gemms"])
    print("cycles, util: START to done; total, e2e: first beat in to last beat out (loads, "
          "GEMM, read-back;\n" f"the three GEMMs together: e2e {work / macs:.3f}). "
          "err: |C - P| / |P| (Frobenius norms), C the DLFLOAT16\nresult, P the float64 "
          "product of the same FP8 operands; 'no chunk': the golden model\naccumulating all "
          "of K in one chunk.")

    # The update: bit-exact check, and what stochastic rounding buys over rne.
    u = report["updates"][0]
    dW = np.load(jobs[2]["out"])
    w_new, v_new = np.load(update["out_w"]), np.load(update["out_v"])
    ew, ev = golden.sgd_update(W16, dW, V16, lr, mu, 0, args.seed, "sr",
                               report["config"]["update_rbits"])
    bad = int(np.count_nonzero(w_new != ew) + np.count_nonzero(v_new != ev))
    bad_total += bad
    rne_w, _ = golden.sgd_update(W16, dW, V16, lr, mu, 0, args.seed, "rne")
    w0 = golden.decode(W16, "dlfloat16")
    # The exact step of this formula from the same DLFLOAT16 inputs (v = 0: v1 = g).
    exact = -golden.decode(np.array(lr), "dlfloat16") * golden.decode(dW, "dlfloat16")
    finite = np.isfinite(exact) & (exact != 0)

    def moved(w1):
        step = golden.decode(w1, "dlfloat16") - w0
        return (float(np.mean(step[finite] != 0)),
                float(np.sum(step[finite]) / np.sum(exact[finite])))

    sr_moved, sr_ratio = moved(w_new)
    rne_moved, rne_ratio = moved(rne_w)
    print(f"\n{'update W (SGD, lr ' + format(args.lr, 'g') + ', momentum 0.9)':<40} "
          f"{'mismatch':>9} {'cycles':>8} {'moved':>7} {'sum step / exact':>17}")
    print(f"{'  stochastic rounding (on the RTL)':<40} {bad:>9} {u['cycles']:>8} "
          f"{sr_moved:>7.1%} {sr_ratio:>17.3f}")
    print(f"{'  round to nearest (golden model)':<40} {'':>9} {'':>8} "
          f"{rne_moved:>7.1%} {rne_ratio:>17.3f}")
    print("moved: weights that changed; sum step / exact: the total of the applied steps over "
          "the total\nof the exact steps -lr * dW (1 is unbiased). Steps below half an ulp "
          "vanish under rne.")
    print(f"Build {report['build_s']:.1f} s, simulation {report['sim_s']:.1f} s, "
          f"total {total:.1f} s.")
    if bad_total:
        print(f"FAILED: {bad_total} results differ from the golden model")
        return 1
    print("Every result matches sim.golden.gemm and sim.golden.sgd_update bit for bit.")
    return 0


def add_demo_parser(sub):
    p = sub.add_parser(
        "demo", help="one training step of a linear layer on the simulated accelerator",
        description="Build a small accelerator (Verilator by default) and run the three GEMMs "
                    "of one training step of a linear layer with FP8 operands: forward "
                    "Y = X W, backward dX = dY W^T (B transposed) and the weight gradient "
                    "dW = X^T dY (A transposed), then the SGD update of the DLFLOAT16 master "
                    "weights with stochastic rounding. Each result is checked bit for bit "
                    "against the golden model; the report gives cycles, utilization, the "
                    "relative error of chunked against unchunked DLFLOAT16 accumulation, and "
                    "how many weights the update moved with stochastic against nearest "
                    "rounding.")
    p.add_argument("--rows", type=array_size("--rows"), default=4,
                   help="array rows (default: %(default)s)")
    p.add_argument("--cols", type=array_size("--cols"), default=4,
                   help="array columns (default: %(default)s)")
    p.add_argument("--batch", type=positive_int("--batch", 4096), default=256,
                   help="batch size, the K of the weight gradient (default: %(default)s)")
    p.add_argument("--d-in", type=positive_int("--d-in", 4096), default=32,
                   help="input features (default: %(default)s)")
    p.add_argument("--d-out", type=positive_int("--d-out", 4096), default=32,
                   help="output features (default: %(default)s)")
    p.add_argument("--chunk", default="32", help="chunk length, a power of two, or 'none' "
                                                 "(default: %(default)s)")
    p.add_argument("--sim", default="verilator", type=str.lower, choices=SIMULATORS,
                   help="verilator or icarus (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-4,
                   help="learning rate of the weight update (default: %(default)s)")
    p.add_argument("--seed", type=xorshift_seed, default=1,
                   help="random seed, also the update's, 1 to 2**32 - 1 (default: "
                        "%(default)s)")
    p.add_argument("--build-dir", default="build/cocotb",
                   help="where the simulator builds go (default: %(default)s)")
    p.set_defaults(func=run_demo_cli)

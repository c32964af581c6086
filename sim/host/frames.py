"""The bytes of each stream frame (docs/host-interface.md, "Stream framing"), for the host
driver and the testbenches.

A frame is a little-endian byte stream cut into beats of the device's stream width
(``BEAT_BYTES``); a partial last beat has ``tkeep`` on its leading bytes (the device ignores
``tkeep`` on the frames it takes, and counts them in beats). ``LOAD_A`` and ``LOAD_C`` carry the
buffer words as the device stores them (:mod:`fp8accel.hw.gemm.layout`), each word padded to a
power of two of bytes; ``LOAD_B`` carries ``B`` as stored, row by row; ``READ_C`` returns the
accumulator words as ``LOAD_C`` takes them (FP8 codes: a byte per lane); ``UPDATE`` takes 8
bytes per element and returns 4.
"""

import numpy as np

from fp8accel.hw.gearbox import pow2_at_least
from fp8accel.hw.gemm.layout import a_image, c_from_image, c_image

__all__ = ["a_frame", "b_frame", "beats", "c_frame", "c_from_frame", "c_frame_bytes",
           "update_frame", "update_results"]


def beats(nbytes, beat_bytes):
    """Beats of a frame of ``nbytes`` bytes."""
    return -(-nbytes // beat_bytes)


def _padded(img, lanes_to):
    out = np.zeros((img.shape[0], lanes_to), img.dtype)
    out[:, :img.shape[1]] = img
    return out


def a_frame(A, rows):
    """``LOAD_A``'s frame of ``A`` (``M x K`` codes): the ``A`` buffer's words, ``rows`` bytes
    each padded to a power of two."""
    return _padded(a_image(A, rows), pow2_at_least(rows)).tobytes()


def b_frame(B_stored):
    """``LOAD_B``'s frame: ``B`` as stored (``K x N``, or ``N x K`` transposed), row by row."""
    return np.ascontiguousarray(B_stored, np.uint8).tobytes()


def c_frame(C, cols):
    """``LOAD_C``'s frame of ``C`` (``M x N`` accumulator codes): the accumulator words'
    totals, ``cols`` lanes of two bytes each, padded to a power of two of lanes."""
    return _padded(c_image(C, cols), pow2_at_least(cols)).astype("<u2").tobytes()


def c_frame_bytes(M, N, cols, fp8=False):
    """Bytes of ``READ_C``'s frame of an ``M x N`` ``C``."""
    return M * -(-N // cols) * pow2_at_least(cols) * (1 if fp8 else 2)


def c_from_frame(data, M, N, cols, fp8=False):
    """``C`` (``M x N``, ``uint8`` FP8 codes or ``uint16`` accumulator codes) from the bytes
    of ``READ_C``'s frame (bytes past its end, from a partial last beat, are ignored)."""
    n = c_frame_bytes(M, N, cols, fp8)
    if len(data) < n:
        raise ValueError(f"A READ_C frame of {M}x{N} has {n} bytes, not {len(data)}")
    dtype = np.uint8 if fp8 else np.dtype("<u2")
    img = np.frombuffer(bytes(data[:n]), dtype).reshape(-1, pow2_at_least(cols))
    return np.ascontiguousarray(c_from_image(img, M, N, cols)).astype(
        np.uint8 if fp8 else np.uint16)


def update_frame(w, g, v):
    """``UPDATE``'s frame: per element ``w, g, v`` and two unused bytes."""
    n = np.asarray(w).size
    words = np.zeros((n, 4), "<u2")
    for i, x in enumerate((w, g, v)):
        words[:, i] = np.asarray(x).ravel()
    return words.tobytes()


def update_results(data, n):
    """``(w1, v1)`` of ``n`` elements from the bytes of ``UPDATE``'s frame out."""
    if len(data) < 4 * n:
        raise ValueError(f"An UPDATE of {n} elements returns {4 * n} bytes, not {len(data)}")
    pairs = np.frombuffer(bytes(data[:4 * n]), "<u2").reshape(n, 2)
    return pairs[:, 0].astype(np.uint16), pairs[:, 1].astype(np.uint16)

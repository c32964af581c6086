"""Where the GEMM engine keeps each operand element: the buffer layouts of
:mod:`hw.gemm.engine`, for host drivers and testbenches.

The ``*_image`` functions give a whole buffer's contents as the host writes them (the stream
frames of ``LOAD_A`` and ``LOAD_C`` carry these images, docs/host-interface.md).
"""

import numpy as np

__all__ = ["a_image", "a_location", "b_address", "c_from_image", "c_image", "c_location"]


def a_location(i, k, K, rows):
    """``(bank, word)`` of ``A[i, k]``."""
    return k % rows, i * -(-K // rows) + k // rows


def b_address(k, j, K, N, transposed=False):
    """Byte address of ``B[k, j]``; a transposed ``B`` is stored as ``N x K``."""
    return j * K + k if transposed else k * N + j


def c_location(i, j, N, cols):
    """``(word, lane)`` of ``C[i, j]`` in the accumulator memory."""
    return i * -(-N // cols) + j // cols, j % cols


def a_image(A, rows):
    """The ``A`` buffer holding ``A`` (``M x K``): ``M * ceil(K / rows)`` words of ``rows``
    banks, as a ``uint8`` array of that shape (bank ``r`` in column ``r``; zeros beyond
    ``K``)."""
    A = np.asarray(A)
    M, K = A.shape
    KB = -(-K // rows)
    img = np.zeros((M, KB * rows), np.uint8)
    img[:, :K] = A
    return img.reshape(M * KB, rows)


def c_image(C, cols):
    """The totals of the accumulator words holding ``C`` (``M x N``): ``M * ceil(N / cols)``
    words of ``cols`` lanes, as a ``uint16`` array of that shape (zeros beyond ``N``)."""
    C = np.asarray(C)
    M, N = C.shape
    NT = -(-N // cols)
    img = np.zeros((M, NT * cols), np.uint16)
    img[:, :N] = C
    return img.reshape(M * NT, cols)


def c_from_image(img, M, N, cols):
    """``C`` (``M x N``) from the lanes of its accumulator words (an array of
    ``M * ceil(N / cols)`` rows of at least ``cols`` lanes)."""
    NT = -(-N // cols)
    img = np.asarray(img)[:M * NT, :cols]
    return img.reshape(M, NT * cols)[:, :N]

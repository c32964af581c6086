"""Where the GEMM engine keeps each operand element: the buffer layouts of
:mod:`hw.gemm.engine`, for host drivers and testbenches."""

__all__ = ["a_location", "b_address", "c_location"]


def a_location(i, k, K, rows):
    """``(bank, word)`` of ``A[i, k]``."""
    return k % rows, i * -(-K // rows) + k // rows


def b_address(k, j, K, N, transposed=False):
    """Byte address of ``B[k, j]``; a transposed ``B`` is stored as ``N x K``."""
    return j * K + k if transposed else k * N + j


def c_location(i, j, N, cols):
    """``(word, lane)`` of ``C[i, j]`` in the accumulator memory."""
    return i * -(-N // cols) + j // cols, j % cols

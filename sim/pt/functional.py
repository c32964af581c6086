"""The golden model's functions on PyTorch tensors, bit for bit.

Ref: docs/numerics.md sections 1-5; docs/training.md ("The PyTorch layer").

Each function takes and returns tensors and computes exactly what its namesake in
:mod:`sim.golden` computes: tensors go in as NumPy arrays without a copy
(``t.detach().contiguous().numpy()``; a copy only for a non-contiguous view) and results come
back through ``torch.from_numpy``, so the arithmetic is the golden model's own, compiled
kernels included, not a third implementation of it. Codes are integer tensors of the dtype
:func:`sim.golden.code_dtype` gives (``torch.uint8`` for FP8, ``torch.uint16`` for the 16-bit
formats, ``torch.uint32`` for BINARY32); values are ``torch.float64``.

Tensors must live on the CPU: the kernels are CPU code and no CUDA path is tested here.
"""

import numpy as np
import torch

from fp8accel.hw.fp.format import FP8_FORMATS, Rounding, format_by_name, rounding_by_name
from fp8accel.sim import golden

__all__ = ["to_numpy", "from_numpy", "decode", "encode", "convert", "gemm", "gemm_values",
           "sgd_update", "xorshift32"]


def to_numpy(t, what="tensor"):
    """The NumPy array behind a CPU tensor (no copy unless ``t`` is a non-contiguous view).
    NumPy arrays and scalars pass through."""
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    if t.device.type != "cpu":
        raise ValueError(f"{what} must be a CPU tensor, not one on {t.device}")
    return t.detach().contiguous().numpy()


def from_numpy(a):
    """A tensor sharing the memory of the NumPy array ``a``."""
    return torch.from_numpy(np.ascontiguousarray(a))


def decode(codes, fmt):
    """:func:`sim.golden.decode` on a tensor of codes: ``float64`` values."""
    return from_numpy(golden.decode(to_numpy(codes, "codes"), fmt))


def encode(values, fmt, rounding="rne", saturate=False, rnd=None, rbits=16):
    """:func:`sim.golden.encode` on a tensor of real values (any float dtype; each is exact in
    float64): codes of ``fmt``."""
    rnd = None if rnd is None else to_numpy(rnd, "rnd")
    return from_numpy(golden.encode(to_numpy(values, "values"), fmt, rounding, saturate, rnd,
                                    rbits))


def convert(a, in_fmt, out_fmt, rounding="rne", saturate=True, rnd=None, rbits=16):
    """:func:`sim.golden.convert` on a tensor of codes."""
    rnd = None if rnd is None else to_numpy(rnd, "rnd")
    return from_numpy(golden.convert(to_numpy(a, "a"), in_fmt, out_fmt, rounding, saturate, rnd,
                                     rbits))


def _check_chunk(chunk, K):
    if chunk is None:
        return max(K, 1)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"Chunk length must be a positive integer or None, not {chunk!r}")
    return min(int(chunk), max(K, 1))


def gemm_values(A, B, a_fmt=golden.E5M2, b_fmt=golden.E5M2, chunk=64, rounding="rne"):
    """``gemm(A, B, a_fmt, b_fmt, DLFLOAT16, chunk, rounding)`` as the ``float64`` values of
    its DLFLOAT16 codes: what a layer passes on to the host's float arithmetic.

    FP8 operands take the golden model's compiled path and never go through codes (its float64
    totals are the exact values of the codes); anything that path hands back (Inf or NaN
    operands, a sum that overflows to NaN) is computed by :func:`sim.golden.gemm` and decoded.
    """
    a_fmt, b_fmt = format_by_name(a_fmt), format_by_name(b_fmt)
    mode = rounding_by_name(rounding, (Rounding.RNE, Rounding.RNA))
    A, B = to_numpy(A, "A"), to_numpy(B, "B")
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"Shapes {A.shape} and {B.shape} do not form a matrix product")
    for x, name in ((A, "A"), (B, "B")):
        if x.dtype != np.uint8:
            raise TypeError(f"{name} must hold FP8 codes as uint8, not {x.dtype}")
    if a_fmt not in FP8_FORMATS or b_fmt not in FP8_FORMATS:
        raise ValueError(f"Operands must be E5M2 or E4M3, not {a_fmt} and {b_fmt}")
    M, K = A.shape
    N = B.shape[1]
    cl = _check_chunk(chunk, K)
    out = None
    if M and N and K:
        out = golden._gemm_values(A, B, a_fmt, b_fmt, cl, mode, np.zeros((M, N)))
    if out is None:
        codes = golden.gemm(A, B, a_fmt, b_fmt, golden.DLFLOAT16, chunk, rounding)
        out = golden.decode(codes, golden.DLFLOAT16)
    return torch.from_numpy(out)


def gemm(A, B, a_fmt=golden.E5M2, b_fmt=golden.E5M2, acc_fmt=golden.DLFLOAT16, chunk=64,
         rounding="rne", C=None, out_fmt=None):
    """:func:`sim.golden.gemm` on tensors of codes (docs/numerics.md section 4): the totals as
    codes of ``acc_fmt``, or of ``out_fmt``.

    FP8 operands with DLFLOAT16 accumulation (every GEMM of training) run the golden model's
    compiled kernel directly on the tensors' memory: no checks of code ranges that ``uint8``
    cannot break, no decoding of a ``C`` that is not there. Everything else is
    :func:`sim.golden.gemm` itself.
    """
    a_fmt, b_fmt, acc_fmt = map(format_by_name, (a_fmt, b_fmt, acc_fmt))
    mode = rounding_by_name(rounding, (Rounding.RNE, Rounding.RNA))
    An, Bn = to_numpy(A, "A"), to_numpy(B, "B")
    Cn = None if C is None else to_numpy(C, "C")
    fast = (acc_fmt is golden.DLFLOAT16 and a_fmt in FP8_FORMATS and b_fmt in FP8_FORMATS
            and An.dtype == np.uint8 and Bn.dtype == np.uint8 and An.ndim == 2 and Bn.ndim == 2
            and An.shape[1] == Bn.shape[0] and all(An.shape) and Bn.shape[1]
            and (Cn is None or (Cn.dtype == np.uint16 and Cn.shape == (An.shape[0],
                                                                       Bn.shape[1]))))
    total = None
    if fast:
        cl = _check_chunk(chunk, An.shape[1])
        Cd = (np.zeros((An.shape[0], Bn.shape[1])) if Cn is None
              else golden.decode(Cn, golden.DLFLOAT16))
        out = golden._gemm_values(An, Bn, a_fmt, b_fmt, cl, mode, Cd)
        if out is not None:
            total = golden._numba_kernels()["to_dl"](out).reshape(out.shape).astype(np.uint16)
            if out_fmt is not None:
                out_fmt = format_by_name(out_fmt)
                if out_fmt is not acc_fmt:
                    if out_fmt not in FP8_FORMATS:
                        raise ValueError(f"out_fmt must be the accumulator format, E5M2 or "
                                         f"E4M3, not {out_fmt}")
                    total = golden.convert(total, acc_fmt, out_fmt, "rne", saturate=True)
    if total is None:
        total = golden.gemm(An, Bn, a_fmt, b_fmt, acc_fmt, chunk, rounding, Cn, out_fmt)
    return from_numpy(total)


def xorshift32(seed, count):
    """:func:`sim.golden.xorshift32`: the first ``count`` words from ``seed`` (``torch.uint32``)."""
    return from_numpy(golden.xorshift32(seed, count))


def sgd_update(w, g, v, lr, momentum, weight_decay, seed, rounding="sr", rbits=16):
    """:func:`sim.golden.sgd_update` on tensors of DLFLOAT16 codes: ``(w, v)``.

    ``lr``, ``momentum`` and ``weight_decay`` are DLFLOAT16 codes (ints or 0-d tensors).
    """
    scal = [to_numpy(x, name) for x, name in
            ((lr, "lr"), (momentum, "momentum"), (weight_decay, "weight_decay"))]
    w1, v1 = golden.sgd_update(to_numpy(w, "w"), to_numpy(g, "g"), to_numpy(v, "v"), *scal,
                               seed, rounding, rbits)
    return from_numpy(w1), from_numpy(v1)

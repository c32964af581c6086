"""``Linear`` and ``Conv2d`` whose GEMMs are the accelerator's, and :func:`convert`.

Ref: docs/training.md ("The PyTorch layer", "Method"); docs/numerics.md sections 2-4.

Each layer runs its three GEMMs through :func:`sim.pt.functional.gemm_values` inside a
``torch.autograd.Function``; everything between the layers (activations, pooling, the loss) is
the host's and stays in PyTorch. With ``x`` the layer's input, ``W`` its weight and ``dy`` the
error arriving from above:

* forward: ``[q_f(x) | 1] . [q_f(W)^T ; q_f(b)]``, the bias an extra weight row against a
  column of ones (so the bias gradient, a sum over the batch, is a GEMM too);
* backward (the error for the layer below): ``q_b(dy) . q_f(W)``;
* weight gradient: ``[q_f(x) | 1]^T . q_b(dy)``, rows split into the weight's and the bias's.

``q_f`` and ``q_b`` are ``encode(., fmt, "rne", saturate=True)`` into the forward and backward
formats of the configuration; a weight is first rounded to DLFLOAT16 (the master copy the
update unit keeps, see :class:`sim.pt.optim.SGD`) and then converted. Every GEMM accumulates in
DLFLOAT16 with the configuration's chunk and rounding; its totals reach the host as exact
float values in the dtype of the layer's input. The forward operands are kept for the weight
gradient, as the hardware keeps them.

A convolution is lowered as the hardware would run it: the forward pass is ``im2col(x) . W``;
the backward pass is the convolution of the errors (zeros inserted between them for a stride,
padded by ``kernel - 1 - padding``) with the flipped kernel, ``im2col(dy) . W_flip``, so that
the sums over the taps and the output channels are accumulated by the GEMM, not by the host;
the weight gradient is ``im2col(x)^T . dy``, a reduction over batch x positions. Patches are
ordered ``(channel, row, column)``, as PyTorch stores a kernel.
"""

import contextlib

import numpy as np
import torch
from torch import nn

from fp8accel.sim import golden
from fp8accel.sim.pt.functional import gemm_values
from fp8accel.sim.pt.numerics import CONFIGS, Numerics

__all__ = ["Numerics", "CONFIGS", "Linear", "Conv2d", "convert", "observe", "quantise",
           "quantise_weight"]


# Observers of the GEMMs -------------------------------------------------------------------------

_OBSERVERS = []


@contextlib.contextmanager
def observe(fn):
    """Call ``fn(kind, layer, A, B, out, a_fmt, b_fmt)`` after every GEMM of the layers in the
    ``with`` block: ``kind`` is ``"forward"``, ``"backward"`` or ``"wgrad"``, ``layer`` the
    layer's name, ``A`` and ``B`` the operand codes (NumPy ``uint8``), ``out`` the float64
    totals (tensor)."""
    _OBSERVERS.append(fn)
    try:
        yield fn
    finally:
        _OBSERVERS.remove(fn)


def _gemm(kind, layer, A, B, a_fmt, b_fmt, numerics):
    out = gemm_values(A, B, a_fmt, b_fmt, numerics.chunk, numerics.accumulate)
    for fn in _OBSERVERS:
        fn(kind, layer, A, B, out, a_fmt, b_fmt)
    return out


# Quantisation -----------------------------------------------------------------------------------

def quantise(x, fmt):
    """FP8 codes (NumPy ``uint8``) of the values of tensor ``x``: ``encode`` rne, saturating."""
    return golden.encode(x.detach().contiguous().numpy(), fmt, "rne", saturate=True)


def quantise_weight(w, fmt):
    """The forward operand of a weight tensor: rounded to DLFLOAT16 (rne, as the master copy
    holds it; no change for weights the optimizer keeps) and converted to ``fmt`` (rne,
    saturating)."""
    master = golden.encode(w.detach().contiguous().numpy(), golden.DLFLOAT16, "rne")
    return golden.convert(master, golden.DLFLOAT16, fmt, "rne", saturate=True)


def _with_ones(a, one):
    return np.concatenate([a, np.full((a.shape[0], 1), one, a.dtype)], axis=1)


def _weight_operand(weight, bias, fmt):
    """``[q(W)^T ; q(b)]`` with ``W`` as ``(out, fan_in)``: ``(fan_in [+ 1], out)`` codes, and
    ``q(W)`` ``(out, fan_in)``."""
    wq = quantise_weight(weight.reshape(weight.shape[0], -1), fmt)
    b = wq.T
    if bias is not None:
        b = np.concatenate([b, quantise_weight(bias, fmt)[None, :]], axis=0)
    return np.ascontiguousarray(b), wq


def _one(fmt):
    return golden.encode(np.array(1.0), fmt)


# Linear -----------------------------------------------------------------------------------------

class _LinearFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, numerics, name):
        fwd = numerics.fwd_fmt
        shape = x.shape
        a = quantise(x.reshape(-1, shape[-1]), fwd)
        if bias is not None:
            a = _with_ones(a, _one(fwd))
        b, wq = _weight_operand(weight, bias, fwd)
        out = _gemm("forward", name, a, b, fwd, fwd, numerics)
        ctx.numerics, ctx.name, ctx.shape = numerics, name, shape
        ctx.a, ctx.wq, ctx.has_bias = a, wq, bias is not None
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return out.to(x.dtype).reshape(*shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        numerics, name = ctx.numerics, ctx.name
        fwd, bwd = numerics.fwd_fmt, numerics.bwd_fmt
        e = quantise(dy.reshape(-1, dy.shape[-1]), bwd)
        dx = dw = db = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            g = _gemm("wgrad", name, np.ascontiguousarray(ctx.a.T), e, fwd, bwd, numerics)
            n_in = ctx.wq.shape[1]
            dw = g[:n_in].T.to(ctx.dtypes[0])
            if ctx.has_bias:
                db = g[n_in].to(ctx.dtypes[1])
        if ctx.needs_input_grad[0]:
            dx = _gemm("backward", name, e, ctx.wq, bwd, fwd, numerics)
            dx = dx.to(dy.dtype).reshape(ctx.shape)
        return dx, dw, db, None, None


class Linear(nn.Linear):
    """``torch.nn.Linear`` whose GEMMs are the accelerator's (see the module's doc).

    Parameters
    ----------
    in_features, out_features, bias, device, dtype
        As ``torch.nn.Linear``.
    numerics : Numerics
        The formats, chunk and rounding of the GEMMs.

    Members
    -------
    numerics : Numerics
    name : str
        Given to the observers of :func:`observe` (``convert`` sets it to the module's path).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *,
                 numerics=CONFIGS["fp8"]):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.numerics = numerics
        self.name = ""

    def forward(self, x):
        return _LinearFn.apply(x, self.weight, self.bias, self.numerics, self.name)

    def extra_repr(self):
        return f"{super().extra_repr()}, numerics={self.numerics.name}"


# Conv2d -----------------------------------------------------------------------------------------

def _pair(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _im2col(codes, kernel, stride):
    """Patches of ``codes`` ``(N, C, H, W)`` (already padded): ``(N * Ho * Wo, C * kh * kw)``,
    a patch ordered ``(channel, row, column)``."""
    t = torch.from_numpy(codes)
    (kh, kw), (sh, sw) = kernel, stride
    p = t.unfold(2, kh, sh).unfold(3, kw, sw)            # N, C, Ho, Wo, kh, kw
    N, C, Ho, Wo = p.shape[:4]
    return p.permute(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * kh * kw).numpy(), (Ho, Wo)


def _pad(codes, pads):
    """Zero codes (+0) around the last two dimensions; negative amounts crop."""
    (top, bottom), (left, right) = pads
    N, C, H, W = codes.shape
    out = np.zeros((N, C, H + max(top, 0) + max(bottom, 0), W + max(left, 0) + max(right, 0)),
                   codes.dtype)
    out[:, :, max(top, 0):max(top, 0) + H, max(left, 0):max(left, 0) + W] = codes
    return out[:, :, max(-top, 0):out.shape[2] - max(-bottom, 0),
               max(-left, 0):out.shape[3] - max(-right, 0)]


class _Conv2dFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, numerics, name, stride, padding):
        fwd = numerics.fwd_fmt
        Co, _, kh, kw = weight.shape
        (ph, pw) = padding
        xq = _pad(quantise(x, fwd), ((ph, ph), (pw, pw)))
        a, (Ho, Wo) = _im2col(xq, (kh, kw), stride)
        if bias is not None:
            a = _with_ones(a, _one(fwd))
        b, wq = _weight_operand(weight, bias, fwd)
        out = _gemm("forward", name, a, b, fwd, fwd, numerics)
        N = x.shape[0]
        ctx.numerics, ctx.name, ctx.stride, ctx.padding = numerics, name, stride, padding
        ctx.a, ctx.wq, ctx.has_bias = a, wq.reshape(weight.shape), bias is not None
        ctx.in_shape = x.shape
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return out.to(x.dtype).reshape(N, Ho, Wo, Co).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def backward(ctx, dy):
        numerics, name = ctx.numerics, ctx.name
        fwd, bwd = numerics.fwd_fmt, numerics.bwd_fmt
        N, Co, Ho, Wo = dy.shape
        e = quantise(dy, bwd)                             # N, Co, Ho, Wo
        dx = dw = db = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            e_rows = np.ascontiguousarray(e.transpose(0, 2, 3, 1)).reshape(-1, Co)
            g = _gemm("wgrad", name, np.ascontiguousarray(ctx.a.T), e_rows, fwd, bwd, numerics)
            k = ctx.wq[0].size
            dw = g[:k].T.reshape(ctx.wq.shape).to(ctx.dtypes[0])
            if ctx.has_bias:
                db = g[k].to(ctx.dtypes[1])
        if ctx.needs_input_grad[0]:
            _, C, H, W = ctx.in_shape
            kh, kw = ctx.wq.shape[2:]
            (sh, sw), (ph, pw) = ctx.stride, ctx.padding
            # The transposed convolution as a convolution: the errors spread out by the stride
            # and padded so that a stride-1 pass of the flipped kernel gives H x W outputs.
            spread = np.zeros((N, Co, (Ho - 1) * sh + 1, (Wo - 1) * sw + 1), e.dtype)
            spread[:, :, ::sh, ::sw] = e
            top, left = kh - 1 - ph, kw - 1 - pw
            bottom = H + kh - 1 - top - spread.shape[2]
            right = W + kw - 1 - left - spread.shape[3]
            cols, _ = _im2col(_pad(spread, ((top, bottom), (left, right))), (kh, kw), (1, 1))
            # W_flip[(co, r, c), ci] = W[co, ci, kh - 1 - r, kw - 1 - c]
            w_flip = np.ascontiguousarray(
                ctx.wq[:, :, ::-1, ::-1].transpose(0, 2, 3, 1)).reshape(Co * kh * kw, C)
            dx = _gemm("backward", name, cols, w_flip, bwd, fwd, numerics)
            dx = dx.to(dy.dtype).reshape(N, H, W, C).permute(0, 3, 1, 2).contiguous()
        return dx, dw, db, None, None, None, None


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` whose GEMMs are the accelerator's (see the module's doc).

    Any kernel size, stride and zero padding; one group, no dilation.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, bias, device, dtype
        As ``torch.nn.Conv2d``.
    numerics : Numerics
        The formats, chunk and rounding of the GEMMs.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 device=None, dtype=None, *, numerics=CONFIGS["fp8"]):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias,
                         device=device, dtype=dtype)
        _check_conv(self)
        self.numerics = numerics
        self.name = ""

    def forward(self, x):
        return _Conv2dFn.apply(x, self.weight, self.bias, self.numerics, self.name,
                               _pair(self.stride), _conv_padding(self))

    def extra_repr(self):
        return f"{super().extra_repr()}, numerics={self.numerics.name}"


def _conv_padding(conv):
    if conv.padding == "valid":
        return (0, 0)
    return _pair(conv.padding)


def _check_conv(conv):
    problems = []
    if conv.groups != 1:
        problems.append(f"groups={conv.groups}")
    if _pair(conv.dilation) != (1, 1):
        problems.append(f"dilation={conv.dilation}")
    if conv.padding_mode != "zeros":
        problems.append(f"padding_mode={conv.padding_mode!r}")
    if conv.padding == "same":
        problems.append("padding='same'")
    if problems:
        raise ValueError(f"Conv2d with {', '.join(problems)} has no lowering to the "
                         f"accelerator's GEMMs (one group, no dilation, zero padding)")


# convert ----------------------------------------------------------------------------------------

def _swappable(model):
    return [(name, m) for name, m in model.named_modules()
            if type(m) in (nn.Linear, nn.Conv2d, Linear, Conv2d)]


def convert(model, config):
    """Give the ``Linear`` and ``Conv2d`` layers of ``model`` the accelerator's numerics, in
    place; returns ``model``.

    ``torch.nn.Linear`` and ``torch.nn.Conv2d`` become :class:`Linear` and :class:`Conv2d`
    holding the same parameters (an optimizer built before still holds them); layers already
    converted take the new numerics. With ``config.first_last == "fp32"`` the first and the
    last of these layers, in the order of ``model.modules()``, stay float32 PyTorch layers.
    ``config`` is a :class:`Numerics` or the name of one of :data:`CONFIGS`; ``"fp32"``
    leaves the model alone.
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"Config must be one of {', '.join(CONFIGS)}, not {config!r}")
        config = CONFIGS[config]
    if config.fp32:
        return model
    layers = _swappable(model)
    if config.first_last == "fp32" and layers:
        layers = layers[1:-1]
    for name, m in layers:
        if isinstance(m, (Linear, Conv2d)):
            m.numerics = config
            continue
        if isinstance(m, nn.Conv2d):
            _check_conv(m)
            new = Conv2d.__new__(Conv2d)
        else:
            new = Linear.__new__(Linear)
        new.__dict__.update(m.__dict__)
        new.numerics, new.name = config, name
        if name:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, new)
        else:
            model = new
    return model

"""The accelerator's numerics in PyTorch: tensor functions, layers and the optimizer.

Ref: docs/training.md ("The PyTorch layer"); docs/numerics.md sections 1-5.

* :mod:`sim.pt.functional`: ``gemm``, ``encode``, ``decode``, ``convert``, ``sgd_update`` and
  ``xorshift32`` on tensors, bit for bit those of :mod:`sim.golden` (they run its code and its
  compiled kernels on the tensors' memory);
* :mod:`sim.pt.layers`: ``Linear`` and ``Conv2d`` whose forward, backward and weight-gradient
  GEMMs are the accelerator's, and ``convert(model, config)``, which gives an existing model
  these layers;
* :mod:`sim.pt.optim`: ``SGD``, the weight-update unit as a ``torch.optim.Optimizer`` on
  DLFLOAT16 master weights and momenta;
* :mod:`sim.pt.numerics`: ``Numerics`` and the named configurations ``CONFIGS`` (no PyTorch
  needed).

The package is ``pt``, not ``torch``: ``from fp8accel.sim import torch`` would rebind the name
``torch`` in the importing module, and a script run from inside ``sim/`` would find this
package before PyTorch. PyTorch is an optional dependency (``pip install -e ".[torch]"``); the
names below are imported when first used, and without PyTorch that raises an ``ImportError``
whose message is :data:`TORCH_HINT`. At the top level the tensor function ``convert`` (codes
to codes) is ``convert_codes``; ``convert`` is the one that swaps a model's layers.
"""

import importlib

__all__ = ["require_torch", "TORCH_HINT", "gemm", "gemm_values", "encode", "decode",
           "convert_codes", "sgd_update", "xorshift32", "Numerics", "CONFIGS", "Linear",
           "Conv2d", "convert", "observe", "SGD", "update_scalars"]

#: What to install, in one line.
TORCH_HINT = ('PyTorch is not installed: pip install -e ".[torch]" '
              '(or pip install torch==2.13.0 mnist1d)')

_WHERE = {
    "gemm": ("functional", "gemm"), "gemm_values": ("functional", "gemm_values"),
    "encode": ("functional", "encode"), "decode": ("functional", "decode"),
    "convert_codes": ("functional", "convert"), "sgd_update": ("functional", "sgd_update"),
    "xorshift32": ("functional", "xorshift32"),
    "Numerics": ("numerics", "Numerics"), "CONFIGS": ("numerics", "CONFIGS"),
    "Linear": ("layers", "Linear"), "Conv2d": ("layers", "Conv2d"),
    "convert": ("layers", "convert"), "observe": ("layers", "observe"),
    "SGD": ("optim", "SGD"), "update_scalars": ("optim", "update_scalars"),
}


def require_torch():
    """Import PyTorch, or raise ``ImportError`` with :data:`TORCH_HINT`."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(TORCH_HINT) from exc
    return torch


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _WHERE[name]
    if module != "numerics":
        require_torch()
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value

"""The accelerator's numerics in PyTorch: tensor functions, layers and the optimizer.

Ref: docs/training.md ("The PyTorch layer"); docs/numerics.md sections 1-5.

* :mod:`sim.pt.functional`: ``gemm``, ``encode``, ``decode``, ``convert``, ``sgd_update`` and
  ``xorshift32`` on tensors, bit for bit those of :mod:`sim.golden` (they run its code and its
  compiled kernels on the tensors' memory);
* :mod:`sim.pt.layers`: ``Linear`` and ``Conv2d`` whose forward, backward and weight-gradient
  GEMMs are the accelerator's, the configurations (``CONFIGS``) and ``convert(model, config)``,
  which gives an existing model these layers;
* :mod:`sim.pt.optim`: ``SGD``, the weight-update unit as a ``torch.optim.Optimizer`` on
  DLFLOAT16 master weights and momenta.

The package is ``pt``, not ``torch``: ``from fp8accel.sim import torch`` would rebind the name
``torch`` in the importing module, and a script run from inside ``sim/`` would find this
package before PyTorch. PyTorch is an optional dependency (``pip install -e ".[torch]"``);
importing this package without it raises the ``ImportError`` of :func:`require_torch`.
"""

__all__ = ["require_torch", "TORCH_HINT"]

#: What to install, in one line.
TORCH_HINT = 'PyTorch is not installed: pip install -e ".[torch]" (or pip install torch==2.13.0)'


def require_torch():
    """Import PyTorch, or raise ``ImportError`` with :data:`TORCH_HINT`."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(TORCH_HINT) from exc
    return torch


require_torch()

from fp8accel.sim.pt.functional import (  # noqa: E402
    convert as convert_codes, decode, encode, gemm, gemm_values, sgd_update, xorshift32)
from fp8accel.sim.pt.layers import (  # noqa: E402
    CONFIGS, Conv2d, Linear, Numerics, convert, observe)
from fp8accel.sim.pt.optim import SGD, update_scalars  # noqa: E402

__all__ += ["gemm", "gemm_values", "encode", "decode", "convert_codes", "sgd_update",
            "xorshift32", "Numerics", "CONFIGS", "Linear", "Conv2d", "convert", "observe", "SGD",
            "update_scalars"]

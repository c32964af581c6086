"""``SGD``: the accelerator's weight-update unit as a ``torch.optim.Optimizer``.

Ref: docs/numerics.md section 5; docs/weight-update.md; docs/training.md ("The PyTorch layer").

The optimizer keeps, for every parameter, DLFLOAT16 codes of the master weights and of the
momentum (``torch.uint16``, in ``state[p]["master"]`` and ``state[p]["momentum"]``), updates
them with :func:`sim.golden.sgd_update` (three FMAs per element, stochastic rounding from
xorshift32, or ``rne``), and leaves the parameter itself holding the master's value (exact in
float32). Building it rounds the parameters to DLFLOAT16 (rne) and zeroes the momenta.

The gradient in ``p.grad`` is taken as DLFLOAT16 (rne; the layers of :mod:`sim.pt.layers`
produce DLFLOAT16 values, which pass unchanged). With a static loss scale ``S`` the gradient
is ``S`` times the true one; the update's scalars absorb it, ``lr / S`` and
``weight_decay * S`` (exact power-of-two scalings before the scalars are rounded to
DLFLOAT16), so the momentum holds scaled gradients and nothing is unscaled element by element.

Every update of a parameter takes a fresh xorshift32 seed: the next word of a seed stream,
itself xorshift32 started at the group's ``seed`` (its current state is the group's ``seed``
entry, so ``state_dict()`` resumes it), unless :meth:`SGD.step` is given the seeds.
"""

import numpy as np
import torch

from fp8accel.sim import golden
from fp8accel.sim.pt.functional import from_numpy, to_numpy

__all__ = ["SGD", "update_scalars"]

_DL = golden.DLFLOAT16


def update_scalars(lr, momentum, weight_decay, loss_scale=1.0):
    """DLFLOAT16 codes (rne) of the update's ``lr / S``, ``momentum``, ``weight_decay * S``."""
    return tuple(int(golden.encode(np.array(float(x)), _DL, "rne"))
                 for x in (lr / loss_scale, momentum, weight_decay * loss_scale))


class SGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay, bit for bit as the accelerator's update unit.

    ``v = momentum * v + (g + weight_decay * w); w = w - lr * v``, each step an FMA rounded to
    DLFLOAT16 (docs/numerics.md section 5).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups, as for any ``torch.optim.Optimizer``.
    lr : float
    momentum : float
    weight_decay : float
    loss_scale : float
        The static loss scale ``S`` the loss was multiplied by before ``backward()``.
    rounding : str
        ``"sr"`` (stochastic, ``rbits`` random bits) or ``"rne"``.
    seed : int
        Start of the group's seed stream, 1 to 2**32 - 1.
    rbits : int
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, loss_scale=1.0,
                 rounding="sr", seed=1, rbits=16):
        if not lr > 0:
            raise ValueError(f"Learning rate must be positive, not {lr!r}")
        if isinstance(seed, bool) or int(seed) != seed or not 0 < int(seed) < (1 << 32):
            raise ValueError(f"Seed must be an integer from 1 to 2**32 - 1, not {seed!r}")
        if rounding not in ("sr", "rne"):
            raise ValueError(f"Rounding must be sr or rne, not {rounding!r}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        loss_scale=loss_scale, rounding=rounding, seed=int(seed), rbits=rbits)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        state = self.state[p]
        if "master" not in state:
            master = golden.encode(to_numpy(p.detach().cpu()), _DL, "rne")
            state["master"] = from_numpy(master)
            state["momentum"] = torch.zeros(p.shape, dtype=torch.uint16)
            with torch.no_grad():
                p.copy_(from_numpy(golden.decode(master, _DL)))

    def master(self, p):
        """DLFLOAT16 codes of the master weights of ``p``."""
        return self.state[p]["master"]

    def momentum(self, p):
        """DLFLOAT16 codes of the momentum of ``p``."""
        return self.state[p]["momentum"]

    def _next_seed(self, group):
        seed = int(golden.xorshift32(group["seed"], 1)[0])
        group["seed"] = seed
        return seed

    @torch.no_grad()
    def step(self, closure=None, seeds=None):
        """One update of every parameter that has a gradient.

        ``seeds``, if given, holds one xorshift32 seed per parameter, in the order of the
        groups and their parameters (parameters without a gradient skip theirs); otherwise the
        groups' seed streams supply them.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        seeds = None if seeds is None else iter([int(s) for s in seeds])
        for group in self.param_groups:
            lr, mu, wd = update_scalars(group["lr"], group["momentum"], group["weight_decay"],
                                        group["loss_scale"])
            for p in group["params"]:
                seed = None if seeds is None else next(seeds)
                if p.grad is None:
                    continue
                self._init_state(p)
                state = self.state[p]
                g = golden.encode(to_numpy(p.grad.detach().cpu()), _DL, "rne")
                w1, v1 = golden.sgd_update(state["master"].numpy(), g,
                                           state["momentum"].numpy(), lr, mu, wd,
                                           seed if seed is not None else self._next_seed(group),
                                           group["rounding"], group["rbits"])
                state["master"], state["momentum"] = from_numpy(w1), from_numpy(v1)
                p.copy_(from_numpy(golden.decode(w1, _DL)))
        return loss

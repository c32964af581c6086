"""cocotb test: one full training step of a small MLP on the accelerator top, through the host
driver, checked bit for bit against the golden model's step (:func:`sim.train.train_step`).

Ref: docs/training.md ("On the RTL"); docs/numerics.md sections 4-5.

The device step is computed from the device's own results: every GEMM (forward ``X . W``,
backward ``E . W^T`` with ``B`` loaded transposed, weight gradient ``X^T . E`` with ``A``
loaded transposed) runs on the top, and the host does only what the host does in training
(ReLU, softmax and loss, quantisation of activations and errors to FP8 with ``golden.encode``,
``convert`` of the master weights); then every parameter's SGD update runs through the UPDATE
action with stochastic rounding. Each GEMM result and the new weights and momenta are compared
with the golden step, in order.

Configuration (``$FP8ACCEL_TB_CONFIG``)::

    {"sizes": [64, 16, 12, 10],   # MLP layer widths
     "batch": 8, "config": "fp8", "seed": 1, "lr": 0.05,
     "chunk": 4,                  # overrides the configuration's chunk (64), so that chunking
                                  # matters in these short GEMMs (K = 8 to 65)
     "sabotage": false}           # the device step accumulates without chunks: must fail
"""

import dataclasses

import cocotb
import numpy as np

from fp8accel.sim import golden
from fp8accel.sim.experiments.train import (
    CONFIGS,
    HYPER,
    Arith,
    _softmax_xent,
    _with_ones,
    load_data,
    make_model,
)
from fp8accel.sim.run.runner import read_tb_config
from fp8accel.sim.tb.top import start

__all__ = ["golden_step", "RecordingArith"]


class RecordingArith(Arith):
    """The golden model's arithmetic, keeping every GEMM result in order."""

    def __init__(self, config, hyper):
        super().__init__(config, hyper)
        self.log = []

    def _gemm(self, a, b, a_role, b_role):
        out = super()._gemm(a, b, a_role, b_role)
        self.log.append(out)
        return out


def setup(cfg):
    """Model, arithmetic, batch and seeds of the step, the same for both sides."""
    config = CONFIGS[cfg.get("config", "fp8")]
    if "chunk" in cfg:
        config = dataclasses.replace(config, chunk=cfg["chunk"])
    hyper = HYPER["mlp"]
    x_tr, y_tr, _, _ = load_data()
    rng = np.random.default_rng(cfg.get("seed", 1))
    idx = rng.permutation(len(x_tr))[:cfg.get("batch", 8)]
    model = make_model("mlp", mlp_sizes=tuple(cfg.get("sizes", (64, 16, 12, 10))))
    ar = RecordingArith(config, hyper)
    model.init(ar, rng)
    seeds = [int(s) for s in rng.integers(1, 1 << 32, len(model.params))]
    return model, ar, x_tr[idx], y_tr[idx], float(cfg.get("lr", 0.05)), seeds


def golden_step(cfg):
    """The golden model's step: ``(gemm results in order, [(w, v) per parameter])``."""
    from fp8accel.sim.experiments.train import train_step
    model, ar, x, y, lr, seeds = setup(cfg)
    train_step(model, ar, x, y, lr, seeds)
    return ar.log, [(p.w, p.v) for p in model.params]


async def device_step(host, cfg, check):
    """The same step on the device; ``check(name, got)`` is called on every result."""
    model, ar, x, y, lr, seeds = setup(cfg)
    fmt = ar.fmt
    chunk = None if cfg.get("sabotage") else ar.config.chunk
    dl = golden.DLFLOAT16

    async def gemm(A, B, a_role, b_role, name, **opts):
        out, _, _ = await host.run_gemm(A, B, a_fmt=fmt[a_role].name.lower(),
                                        b_fmt=fmt[b_role].name.lower(), chunk=chunk, **opts)
        check(name, out)
        return out

    n = len(model.layers)
    one = ar.one("fwd")
    h = x.reshape(len(x), -1)
    acts, wqs, masks = [], [], []
    for i, p in enumerate(model.params):
        a = _with_ones(ar.quantise(h, "fwd"), one)
        wq = ar.weight(p.w)
        out = golden.decode(await gemm(a, wq, "fwd", "fwd", f"forward {i + 1}"), dl)
        acts.append(a)
        wqs.append(wq)
        if i < n - 1:
            masks.append(out > 0)
            out = np.maximum(out, 0)
        h = out
    _, d = _softmax_xent(h, y)
    d = d * ar.scale
    grads = [None] * n
    for i in reversed(range(n)):
        e = ar.quantise(d, "bwd")
        # X^T . E with A loaded as stored (X is A^T): the transposed load of the top.
        grads[i] = await gemm(acts[i], e, "fwd", "bwd", f"weight gradient {i + 1}",
                              transpose_a=True)
        if i > 0:
            # E . W^T with B loaded as stored (W without its bias row is B^T).
            dx = await gemm(e, wqs[i][:-1], "bwd", "fwd", f"backward {i + 1}",
                            transpose_b=True)
            d = golden.decode(dx, dl) * masks[i - 1]
    lr_c, mu_c, wd_c = ar.scalars(lr)
    new = []
    for i, p in enumerate(model.params):
        w1, v1 = await host.update(p.w, grads[i], p.v, lr=lr_c, momentum=mu_c,
                                   weight_decay=wd_c, seed=seeds[i],
                                   rounding=ar.config.update)
        new.append((w1, v1))
    return new


@cocotb.test()
async def test_training_step_matches_golden(dut):
    cfg = read_tb_config()
    want_gemms, want_params = golden_step(cfg)
    # The golden step's GEMMs in its own order: forward 1..n, then per layer from the last:
    # weight gradient, backward.
    n = len(want_params)
    names = [f"forward {i + 1}" for i in range(n)]
    for i in reversed(range(n)):
        names.append(f"weight gradient {i + 1}")
        if i > 0:
            names.append(f"backward {i + 1}")
    expected = dict(zip(names, want_gemms))
    assert len(want_gemms) == len(names), (len(want_gemms), names)
    checked = []

    def check(name, got):
        want = expected[name]
        bad = np.argwhere(np.asarray(got) != want)
        assert bad.size == 0, (f"{name}: {len(bad)} of {want.size} results differ from the "
                               f"golden step, first at {tuple(bad[0])}: device "
                               f"0x{int(got[tuple(bad[0])]):04x}, golden "
                               f"0x{int(want[tuple(bad[0])]):04x}")
        checked.append(name)

    host = await start(dut)
    got_params = await device_step(host, cfg, check)
    assert sorted(checked) == sorted(names), checked
    for i, ((w, v), (w1, v1)) in enumerate(zip(want_params, got_params)):
        for what, want, got in (("w", w, w1), ("v", v, v1)):
            bad = int((np.asarray(got) != want).sum())
            assert bad == 0, f"layer {i + 1} {what}: {bad} of {want.size} codes differ"
    total = sum(w.size for w, _ in want_params)
    dut._log.info(f"training step: {len(names)} GEMMs and {n} updates ({total} weights) match "
                  f"the golden step bit for bit")

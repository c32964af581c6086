"""cocotb test: one full training step of a small MLP on the accelerator top, through the host
driver, checked bit for bit against the same step through the PyTorch layer (:mod:`sim.pt`:
``Linear`` layers and ``SGD`` on the golden model, :func:`sim.experiments.train.train_step`).

Ref: docs/training.md ("On the RTL"); docs/numerics.md sections 4-5.

The device step is computed from the device's own results: every GEMM (forward ``X . W``,
backward ``E . W^T`` with ``B`` loaded transposed, weight gradient ``X^T . E`` with ``A``
loaded transposed) runs on the top, and the host does only what the host does in training
(ReLU, softmax and loss, quantisation of activations and errors to FP8 with ``golden.encode``,
``convert`` of the master weights); then every parameter's SGD update runs through the UPDATE
action with stochastic rounding. Each GEMM result and the new weights and momenta are compared
with the PyTorch step, in order. The layers keep PyTorch's parameters, a weight ``(out, in)`` and
a bias, and the update runs on each (weight, then bias, one seed each); in the GEMMs the bias
is the last row of ``B`` against a column of ones in ``A``.

Configuration (``$FP8ACCEL_TB_CONFIG``)::

    {"sizes": [64, 16, 12, 10],   # MLP layer widths
     "batch": 8, "config": "fp8", "seed": 1, "lr": 0.05,
     "chunk": 4,                  # overrides the configuration's chunk (64), so that chunking
                                  # matters in these short GEMMs (K = 8 to 65)
     "sabotage": false}           # the device step accumulates without chunks: must fail
"""

import cocotb
import numpy as np

from fp8accel.sim import golden
from fp8accel.sim.experiments.train import HYPER, load_data, softmax_xent
from fp8accel.sim.pt.numerics import CONFIGS
from fp8accel.sim.run.runner import read_tb_config
from fp8accel.sim.tb.top import start

__all__ = ["golden_step", "setup"]

_DL = golden.DLFLOAT16


def setup(cfg):
    """Numerics, hyper-parameters, initial weights, batch and seeds of the step, the same for
    both sides: per layer ``(W, b)`` as float64 values that are exact DLFLOAT16 values, ``W``
    ``(out, in)`` as PyTorch keeps it; one update seed per parameter (weight, then bias, per
    layer)."""
    numerics = CONFIGS[cfg.get("config", "fp8")]
    if "chunk" in cfg:
        numerics = numerics.replace(chunk=cfg["chunk"])
    hyper = HYPER["digits", "mlp"]
    x_tr, y_tr, _, _ = load_data("digits")
    rng = np.random.default_rng(cfg.get("seed", 1))
    idx = rng.permutation(len(x_tr))[:cfg.get("batch", 8)]
    sizes = tuple(cfg.get("sizes", (64, 16, 12, 10)))
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        b = rng.uniform(-0.1, 0.1, n_out)
        params.append(tuple(golden.decode(golden.encode(x, _DL), _DL) for x in (w, b)))
    seeds = [int(s) for s in rng.integers(1, 1 << 32, 2 * len(params))]
    x = x_tr[idx].reshape(len(idx), -1)
    return numerics, hyper, params, x, y_tr[idx], float(cfg.get("lr", 0.05)), seeds


def golden_step(cfg):
    """The step through the PyTorch layer (:mod:`sim.pt`: its ``Linear`` layers and ``SGD``,
    which run the golden model): ``(gemm results in order, [(w, v) per parameter])``, codes."""
    import torch

    from fp8accel.sim.experiments.train import mlp_from_arrays, train_step
    from fp8accel.sim.pt import SGD, convert, observe
    numerics, hyper, params, x, y, lr, seeds = setup(cfg)
    model = convert(mlp_from_arrays(params), numerics)
    opt = SGD(model.parameters(), lr=lr, momentum=hyper.momentum,
              weight_decay=hyper.weight_decay, loss_scale=numerics.loss_scale,
              rounding=numerics.update)
    log = []
    with observe(lambda kind, layer, A, B, out, a_fmt, b_fmt:
                 log.append(golden.encode(out.numpy(), _DL))):
        train_step(model, opt, torch.from_numpy(x), y, numerics.loss_scale, seeds)
    return log, [(opt.master(p).numpy(), opt.momentum(p).numpy()) for p in model.parameters()]


async def device_step(host, cfg, check):
    """The same step on the device, the host computing with the golden model only;
    ``check(name, got)`` is called on every GEMM result. Returns ``[(w, v) per parameter]``."""
    numerics, hyper, params, x, y, lr, seeds = setup(cfg)
    fwd, bwd = numerics.fwd_fmt, numerics.bwd_fmt
    chunk = None if cfg.get("sabotage") else numerics.chunk

    def q(values, fmt):
        return golden.encode(values, fmt, "rne", saturate=True)

    def weight(values):
        return golden.convert(golden.encode(values, _DL), _DL, fwd, "rne", saturate=True)

    async def gemm(A, B, a_fmt, b_fmt, name, **opts):
        out, _, _ = await host.run_gemm(A, B, a_fmt=a_fmt.name.lower(), b_fmt=b_fmt.name.lower(),
                                        chunk=chunk, **opts)
        check(name, out)
        return out

    n = len(params)
    one = golden.encode(np.array(1.0), fwd)
    h = x
    acts, wqs, masks = [], [], []
    for i, (w, b) in enumerate(params):
        a = np.concatenate([q(h, fwd), np.full((len(h), 1), one, np.uint8)], axis=1)
        # [W^T ; b]: the bias is the last weight row, against the column of ones.
        wb = np.concatenate([weight(w).T, weight(b)[None, :]], axis=0)
        out = golden.decode(await gemm(a, wb, fwd, fwd, f"forward {i + 1}"), _DL)
        acts.append(a)
        wqs.append(wb)
        if i < n - 1:
            masks.append(out > 0)
            out = np.maximum(out, 0)
        h = out
    _, d = softmax_xent(h, y)
    d = d * numerics.loss_scale
    grads = [None] * n
    for i in reversed(range(n)):
        e = q(d, bwd)
        # X^T . E with A loaded as stored (X is A^T): the transposed load of the top.
        grads[i] = await gemm(acts[i], e, fwd, bwd, f"weight gradient {i + 1}",
                              transpose_a=True)
        if i > 0:
            # E . W with B loaded as stored (W^T, without its bias row, is B^T).
            dx = await gemm(e, wqs[i][:-1], bwd, fwd, f"backward {i + 1}", transpose_b=True)
            d = golden.decode(dx, _DL) * masks[i - 1]
    lr_c, mu_c, wd_c = (int(golden.encode(np.array(v), _DL)) for v in
                        (lr / numerics.loss_scale, hyper.momentum,
                         hyper.weight_decay * numerics.loss_scale))
    new = []
    for i, (w, b) in enumerate(params):
        g = grads[i]
        n_in = w.shape[1]
        for j, (value, grad) in enumerate(((w, g[:n_in].T), (b, g[n_in]))):
            w1, v1 = await host.update(golden.encode(value, _DL), np.ascontiguousarray(grad),
                                       np.zeros(value.shape, np.uint16), lr=lr_c,
                                       momentum=mu_c, weight_decay=wd_c, seed=seeds[2 * i + j],
                                       rounding=numerics.update)
            new.append((w1, v1))
    return new


@cocotb.test()
async def test_training_step_matches_golden(dut):
    cfg = read_tb_config()
    want_gemms, want_params = golden_step(cfg)
    # The golden step's GEMMs in its own order: forward 1..n, then per layer from the last:
    # weight gradient, backward.
    n = len(want_params) // 2
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
            assert bad == 0, (f"layer {i // 2 + 1} {('weight', 'bias')[i % 2]} {what}: {bad} "
                              f"of {want.size} codes differ")
    total = sum(w.size for w, _ in want_params)
    dut._log.info(f"training step: {len(names)} GEMMs and {n} updates ({total} weights) match "
                  f"the PyTorch step bit for bit")

"""``fp8accel train``: small networks trained with the accelerator's numerics.

Ref: docs/numerics.md sections 4-5; docs/training.md ("Method", "Hyper-parameters", "Results").

Every GEMM of the forward pass, the backward pass and the weight gradient runs through
:func:`sim.golden.gemm` (FP8 operands, chunked DLFLOAT16 accumulation), and every weight update
through :func:`sim.golden.sgd_update` on DLFLOAT16 master weights; the golden model is bit-exact
to the RTL, so this is what the accelerator computes. Softmax, loss, ReLU and max-pooling run in
float64 (float32 for the ``fp32`` reference). All layers, the first and the last included, use
FP8 operands; biases ride in the GEMMs as an extra weight row against a column of ones, so their
gradients (long sums over the batch) are accumulated by the GEMM too.

Data: scikit-learn's bundled ``load_digits`` (1797 8x8 images, 10 classes), one fixed
stratified split (1437 training, 360 test images) for every seed and configuration. The seed
sets the initialisation, the order of the batches and the stochastic-rounding seeds.
"""

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fp8accel.sim import golden
from fp8accel.sim.files import save_figure, write_text
from fp8accel.sim.progress import Progress

__all__ = ["CONFIGS", "MODELS", "Config", "Hyper", "HYPER", "load_data", "Arith", "make_model",
           "train_step", "train", "run_all", "add_train_parser"]


@dataclass(frozen=True)
class Config:
    """The numerics of one training configuration."""
    name: str
    fp32: bool = False
    fwd: str = "e5m2"          # weights and activations (forward operands)
    bwd: str = "e5m2"          # errors (gradients with respect to activations)
    chunk: int | None = 64     # accumulation chunk of every GEMM; None: no chunking
    update: str = "sr"         # rounding of the DLFLOAT16 weight update
    what: str = ""


CONFIGS = {c.name: c for c in (
    Config("fp32", fp32=True, what="float32 reference: same model, data, initialisation and "
                                   "schedule"),
    Config("fp8", what="E5M2 operands everywhere, chunk 64, rne accumulation, sr update"),
    Config("hfp8", fwd="e4m3", what="E4M3 weights and activations, E5M2 errors, chunk 64, "
                                    "sr update"),
    Config("fp8-nochunk", chunk=None, what="fp8 with sequential DLFLOAT16 accumulation"),
    Config("fp8-rne", update="rne", what="fp8 with round-to-nearest weight updates"),
)}

MODELS = ("mlp", "cnn")


@dataclass(frozen=True)
class Hyper:
    """Hyper-parameters of one model (the same for every configuration)."""
    batch: int
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss_scale: float = 2.0 ** 10
    #: Learning rate ``lr * factor`` from ``epoch >= start * epochs``, in order.
    schedule: tuple = ((0.5, 0.1), (0.75, 0.01))


HYPER = {
    # 1437 / 128: 12 steps per epoch, 360 steps; the weight-gradient GEMMs reduce over K = 128.
    "mlp": Hyper(batch=128, epochs=30, lr=0.05),
    # 1437 / 128: 12 steps per epoch, 360 steps; the first convolution's weight-gradient GEMM
    # reduces over K = 128 * 8 * 8 = 8192 positions, the second's over 128 * 4 * 4 = 2048.
    "cnn": Hyper(batch=128, epochs=30, lr=0.1),
}


def lr_at(hyper, epoch):
    lr = hyper.lr
    for start, factor in hyper.schedule:
        if epoch >= start * hyper.epochs:
            lr = hyper.lr * factor
    return lr


def load_data():
    """``(x_train, y_train, x_test, y_test)``: images ``(n, 8, 8)`` scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, random_state=0, stratify=y)
    return x_tr, y_tr, x_te, y_te


# Arithmetic -------------------------------------------------------------------------------------

class Arith:
    """The numerics of a configuration: quantisation, GEMMs and the weight update.

    Operands are FP8 codes (``uint8``) for the FP8 configurations and float32 arrays for
    ``fp32``. ``role`` is ``"fwd"`` (weights, activations) or ``"bwd"`` (errors).
    """

    def __init__(self, config, hyper):
        self.config = config
        self.hyper = hyper
        self.fp32 = config.fp32
        self.scale = 1.0 if config.fp32 else hyper.loss_scale
        self.fmt = {"fwd": golden.format_by_name(config.fwd),
                    "bwd": golden.format_by_name(config.bwd)}
        self.gemms = 0
        self.macs = 0
        self.reset_stats()

    def reset_stats(self):
        #: Diagnostics: per layer, the relative error of the weight-gradient GEMM against
        #: float64 on the same FP8 operands; the weight change the updates made and the one
        #: they asked for (sum of |lr * v|).
        self.wgrad_err = {}
        self.updates = [0.0, 0.0]

    def quantise(self, x, role):
        """An activation or error as an operand (FP8: ``encode`` rne, saturating)."""
        if self.fp32:
            return np.asarray(x, np.float32)
        return golden.encode(x, self.fmt[role], "rne", saturate=True)

    def one(self, role):
        return np.float32(1) if self.fp32 else golden.encode(np.array(1.0), self.fmt[role])

    def zero(self):
        return np.float32(0) if self.fp32 else np.uint8(0)

    def master(self, w):
        """Master weights from float64 initial values (FP8 configs: DLFLOAT16 codes, rne)."""
        if self.fp32:
            return w.astype(np.float32)
        return golden.encode(w, golden.DLFLOAT16, "rne")

    def weight(self, w):
        """The forward operand of master weights (FP8: ``convert`` rne, saturating)."""
        if self.fp32:
            return w
        return golden.convert(w, golden.DLFLOAT16, self.fmt["fwd"], "rne", saturate=True)

    def _gemm(self, a, b, a_role, b_role):
        self.gemms += 1
        self.macs += a.shape[0] * a.shape[1] * b.shape[1]
        return golden.gemm(a, b, self.fmt[a_role], self.fmt[b_role], golden.DLFLOAT16,
                           chunk=self.config.chunk, rounding="rne")

    def matmul(self, a, b, a_role, b_role):
        """``a . b`` as values (float64; float32 for ``fp32``)."""
        if self.fp32:
            return a @ b
        return golden.decode(self._gemm(a, b, a_role, b_role), golden.DLFLOAT16)

    def wgrad(self, a, b, a_role, b_role, name=""):
        """The weight gradient ``a . b`` as the update takes it (DLFLOAT16 codes or float32),
        loss-scaled."""
        if self.fp32:
            return a @ b
        g = self._gemm(a, b, a_role, b_role)
        exact = golden.decode(a, self.fmt[a_role]) @ golden.decode(b, self.fmt[b_role])
        err = np.linalg.norm(golden.decode(g, golden.DLFLOAT16) - exact)
        self.wgrad_err.setdefault(name, []).append(err / max(np.linalg.norm(exact), 1e-300))
        return g

    def scalars(self, lr):
        """DLFLOAT16 codes (rne) of the update's ``lr / S``, ``momentum``, ``weight_decay * S``
        for loss scale ``S``."""
        h, s = self.hyper, self.scale
        return tuple(int(golden.encode(np.array(x), golden.DLFLOAT16, "rne"))
                     for x in (lr / s, h.momentum, h.weight_decay * s))

    def update(self, p, g, lr, seed):
        """SGD with momentum and weight decay of parameter ``p`` (docs/numerics.md section 5).

        The gradient ``g`` is ``loss_scale`` times the true one; the scale is folded into the
        scalars (``lr / S``, ``weight_decay * S``, both powers-of-two scalings), so the momentum
        holds scaled gradients and nothing is rescaled element by element.
        """
        h = self.hyper
        if self.fp32:
            g1 = h.weight_decay * p.w + g
            p.v = (h.momentum * p.v + g1).astype(np.float32)
            p.w = (p.w - lr * p.v).astype(np.float32)
            return
        lr_c, mu_c, wd_c = self.scalars(lr)
        w0 = p.w
        p.w, p.v = golden.sgd_update(p.w, g, p.v, lr_c, mu_c, wd_c, seed,
                                     rounding=self.config.update)
        dl, s = golden.DLFLOAT16, self.scale
        moved = np.abs(golden.decode(p.w, dl) - golden.decode(w0, dl)).sum()
        self.updates[0] += float(moved)
        self.updates[1] += float(np.abs(golden.decode(p.v, dl)).sum() * lr / s)

    def values(self, w):
        """Master weights as float64."""
        return w.astype(np.float64) if self.fp32 else golden.decode(w, golden.DLFLOAT16)


# Layers -----------------------------------------------------------------------------------------

@dataclass
class Param:
    """A weight matrix ``(fan_in + 1, fan_out)``, its last row the bias."""
    w: np.ndarray
    v: np.ndarray
    name: str = ""


def _with_ones(a, one):
    return np.concatenate([a, np.full((a.shape[0], 1), one, a.dtype)], axis=1)


def im2col(x, pad_value):
    """3x3 patches, padding 1, stride 1: ``(B, H, W, C) -> (B * H * W, 9 * C)``, rows of a
    patch ordered ``(dy, dx, c)``."""
    B, H, W, C = x.shape
    xp = np.full((B, H + 2, W + 2, C), pad_value, x.dtype)
    xp[:, 1:-1, 1:-1] = x
    cols = [xp[:, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)]
    return np.stack(cols, axis=3).reshape(B * H * W, 9 * C)


def _he_init(shape, rng):
    """He-initialised weights of ``shape`` with a zero bias row appended."""
    w = np.zeros((shape[0] + 1, shape[1]))
    w[:-1] = rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])
    return w


class Dense:
    def __init__(self, n_in, n_out, name):
        self.shape = (n_in, n_out)
        self.name = name

    def init(self, rng):
        return _he_init(self.shape, rng)

    def forward(self, ar, p, x, need_dx):
        a = _with_ones(ar.quantise(x, "fwd"), ar.one("fwd"))
        wq = ar.weight(p.w)
        self.cache = (a, wq, need_dx)
        return ar.matmul(a, wq, "fwd", "fwd")

    def backward(self, ar, dy):
        a, wq, need_dx = self.cache
        e = ar.quantise(dy, "bwd")
        g = ar.wgrad(a.T, e, "fwd", "bwd", self.name)
        dx = ar.matmul(e, wq[:-1].T, "bwd", "fwd") if need_dx else None
        return dx, g


class Conv3x3:
    """3x3 convolution, padding 1, stride 1, NHWC, lowered to GEMMs: the forward pass is
    ``im2col(x) . W``; the backward pass is the convolution of the padded errors with the
    flipped kernel, ``im2col(dy) . W_flip``; the weight gradient is ``im2col(x)^T . dy``."""

    def __init__(self, c_in, c_out, name):
        self.shape = (9 * c_in, c_out)
        self.c_in, self.c_out = c_in, c_out
        self.name = name

    def init(self, rng):
        return _he_init(self.shape, rng)

    def forward(self, ar, p, x, need_dx):
        B, H, W, _ = x.shape
        a = _with_ones(im2col(ar.quantise(x, "fwd"), ar.zero()), ar.one("fwd"))
        wq = ar.weight(p.w)
        self.cache = (a, wq, need_dx, x.shape)
        return ar.matmul(a, wq, "fwd", "fwd").reshape(B, H, W, self.c_out)

    def backward(self, ar, dy):
        a, wq, need_dx, shape = self.cache
        e = ar.quantise(dy, "bwd")
        g = ar.wgrad(a.T, e.reshape(-1, self.c_out), "fwd", "bwd", self.name)
        dx = None
        if need_dx:
            k = wq[:-1].reshape(3, 3, self.c_in, self.c_out)[::-1, ::-1]
            w_flip = np.ascontiguousarray(k.transpose(0, 1, 3, 2)).reshape(9 * self.c_out,
                                                                           self.c_in)
            dx = ar.matmul(im2col(e, ar.zero()), w_flip, "bwd", "fwd").reshape(shape)
        return dx, g


def relu_fwd(x):
    return np.maximum(x, 0)


def pool_fwd(x):
    """2x2 max-pool; returns the output and the mask of the first maximum of each window."""
    B, H, W, C = x.shape
    win = x.reshape(B, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 5, 2, 4).reshape(
        B, H // 2, W // 2, C, 4)
    idx = win.argmax(axis=-1)
    out = np.take_along_axis(win, idx[..., None], -1)[..., 0]
    return out, idx


def pool_bwd(dy, idx, shape):
    B, H, W, C = shape
    win = np.zeros(dy.shape + (4,), dy.dtype)
    np.put_along_axis(win, idx[..., None], dy[..., None], -1)
    return win.reshape(B, H // 2, W // 2, C, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(shape)


class Model:
    """A sequence of GEMM layers with ReLU (and, for the CNN, max-pooling) between them."""

    def __init__(self, kind, mlp_sizes=(64, 128, 64, 10)):
        self.kind = kind
        if kind == "mlp":
            self.layers = [Dense(a, b, f"fc{i + 1}")
                           for i, (a, b) in enumerate(zip(mlp_sizes[:-1], mlp_sizes[1:]))]
        elif kind == "cnn":
            self.layers = [Conv3x3(1, 16, "conv1"), Conv3x3(16, 32, "conv2"),
                           Dense(2 * 2 * 32, 10, "fc")]
        else:
            raise ValueError(f"Model must be one of {', '.join(MODELS)}, not {kind!r}")

    def init(self, ar, rng):
        self.params = []
        for layer in self.layers:
            w = ar.master(layer.init(rng))
            self.params.append(Param(w, np.zeros_like(w), layer.name))

    def forward(self, ar, x):
        """Logits (float64) of images ``x`` ``(B, 8, 8)``."""
        self.aux = []
        if self.kind == "mlp":
            h = x.reshape(len(x), -1)
            for i, (layer, p) in enumerate(zip(self.layers, self.params)):
                h = layer.forward(ar, p, h, i > 0)
                if i < len(self.layers) - 1:
                    self.aux.append(h > 0)
                    h = relu_fwd(h)
            return np.asarray(h, np.float64)
        h = x.reshape(len(x), 8, 8, 1)
        for i in range(2):
            h = self.layers[i].forward(ar, self.params[i], h, i > 0)
            mask = h > 0
            h, idx = pool_fwd(relu_fwd(h))
            self.aux.append((mask, idx))
        h = self.layers[2].forward(ar, self.params[2], h.reshape(len(x), -1), True)
        return np.asarray(h, np.float64)

    def backward(self, ar, dlogits):
        """Weight gradients, one per parameter, from the (loss-scaled) logit gradient."""
        grads = [None] * len(self.layers)
        if self.kind == "mlp":
            d = dlogits
            for i in reversed(range(len(self.layers))):
                d, grads[i] = self.layers[i].backward(ar, d)
                if i > 0:
                    d = d * self.aux[i - 1]
            return grads
        d, grads[2] = self.layers[2].backward(ar, dlogits)
        for i in (1, 0):
            mask, idx = self.aux[i]
            B, H, W, C = mask.shape
            d = pool_bwd(d.reshape(B, H // 2, W // 2, C), idx, mask.shape) * mask
            d, grads[i] = self.layers[i].backward(ar, d)
        return grads


def make_model(kind, **kwargs):
    return Model(kind, **kwargs)


def train_step(model, ar, x, y, lr, seeds):
    """One SGD step on images ``x`` with labels ``y``: forward, loss, backward, one update per
    parameter (``seeds``: one stochastic-rounding seed each). Returns the loss."""
    logits = model.forward(ar, x)
    loss, dlogits = _softmax_xent(logits, y)
    grads = model.backward(ar, dlogits * ar.scale)
    for p, g, sd in zip(model.params, grads, seeds):
        ar.update(p, g, lr, int(sd))
    return loss


def _softmax_xent(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(np.maximum(p[np.arange(len(y)), y], 1e-300)).mean()
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    return loss, d / len(y)


# Training ---------------------------------------------------------------------------------------

def evaluate(model, ar, x, y, batch=360):
    correct = 0
    for i in range(0, len(x), batch):
        logits = model.forward(ar, x[i:i + batch])
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return 100.0 * correct / len(x)


def train(model_kind, config_name, seed=1, epochs=None, data=None, progress=True,
          stream=None, hyper=None):
    """Train one model with one configuration; returns the result as a dict (see
    docs/training.md for the fields)."""
    if config_name not in CONFIGS:
        raise ValueError(f"Config must be one of {', '.join(CONFIGS)}, not {config_name!r}")
    if model_kind not in MODELS:
        raise ValueError(f"Model must be one of {', '.join(MODELS)}, not {model_kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, not {seed!r}")
    config = CONFIGS[config_name]
    hyper = hyper or HYPER[model_kind]
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"Epochs must be at least 1, not {epochs}")
        hyper = Hyper(**{**asdict(hyper), "epochs": int(epochs)})
    x_tr, y_tr, x_te, y_te = data if data is not None else load_data()
    ar = Arith(config, hyper)
    model = make_model(model_kind)
    rng = np.random.default_rng([seed, 0])
    model.init(ar, rng)
    # Shuffling and stochastic-rounding seeds: one stream per seed, the same for every config.
    order_rng = np.random.default_rng([seed, 1])
    steps = -(-len(x_tr) // hyper.batch)
    # The bar shows the quantities the result records, under their names: train_loss is the
    # mean loss of the epoch's batches so far, the epoch's train_loss at its last batch.
    bar = (Progress(hyper.epochs * steps, desc=f"{model_kind}/{config_name}/seed {seed}",
                    unit="batch", file=stream) if progress else nullcontext())
    curve = []
    t0 = time.perf_counter()
    with bar:
        for epoch in range(hyper.epochs):
            lr = lr_at(hyper, epoch)
            perm = order_rng.permutation(len(x_tr))
            losses = []
            for s in range(steps):
                idx = perm[s * hyper.batch:(s + 1) * hyper.batch]
                seeds = order_rng.integers(1, 1 << 32, len(model.params))
                losses.append(train_step(model, ar, x_tr[idx], y_tr[idx], lr, seeds))
                if progress:
                    bar.update(1, epoch=epoch + 1, train_loss=float(np.mean(losses)))
            acc = evaluate(model, ar, x_te, y_te)
            point = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)),
                     "test_accuracy": acc}
            if not ar.fp32:
                point["update_ratio"] = ar.updates[0] / max(ar.updates[1], 1e-300)
                point["wgrad_rel_error"] = {k: float(np.mean(v))
                                            for k, v in ar.wgrad_err.items()}
            curve.append(point)
            ar.reset_stats()
            if progress:
                bar.update(0, force=True, train_loss=point["train_loss"], test_accuracy=acc)
    seconds = time.perf_counter() - t0
    train_acc = evaluate(model, ar, x_tr, y_tr, batch=512)
    return {"model": model_kind, "config": config_name, "seed": int(seed),
            "numerics": asdict(config), "hyper": asdict(hyper),
            "final_test_accuracy": curve[-1]["test_accuracy"], "final_train_accuracy": train_acc,
            "final_train_loss": curve[-1]["train_loss"], "curve": curve,
            "gemms": ar.gemms, "emulated_macs": ar.macs, "seconds": seconds}


# Tables and plots ------------------------------------------------------------------------------

def _mean_std(values):
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarise(results):
    """Per (model, config): mean and standard deviation of the final accuracies over seeds,
    and of the diagnostics of the last epoch."""
    rows = {}
    for r in results:
        rows.setdefault((r["model"], r["config"]), []).append(r)
    out = []
    for (model, config), rs in rows.items():
        last = [r["curve"][-1] for r in rs]
        row = {"model": model, "config": config, "seeds": [r["seed"] for r in rs],
               "test_accuracy": _mean_std([r["final_test_accuracy"] for r in rs]),
               "train_accuracy": _mean_std([r["final_train_accuracy"] for r in rs]),
               "train_loss": _mean_std([r["final_train_loss"] for r in rs]),
               "seconds": float(np.mean([r["seconds"] for r in rs]))}
        if "update_ratio" in last[0]:
            row["update_ratio_last_epoch"] = float(np.mean([p["update_ratio"] for p in last]))
            errs = {}
            for r in rs:
                for layer in r["curve"][0]["wgrad_rel_error"]:
                    errs.setdefault(layer, []).append(np.mean(
                        [p["wgrad_rel_error"][layer] for p in r["curve"]]))
            row["wgrad_rel_error"] = {k: float(np.mean(v)) for k, v in errs.items()}
        out.append(row)
    return out


def markdown_table(summary, hypers, elapsed):
    lines = ["# Training results", "",
             "Produced by `fp8accel train --all` (see docs/training.md). Final test accuracy "
             "(360 held-out images) and training loss after the last epoch, mean ± standard "
             "deviation over the seeds; Δ is the difference of the mean accuracy from `fp32` in "
             "percentage points. `wgrad err` is the relative error (Frobenius norm, averaged "
             "over all steps) of each weight-gradient GEMM against float64 on the same FP8 "
             "operands, listed from the first layer to the last; `update ratio` is the weight "
             "change the updates of the last epoch made over the change they asked for, "
             "sum |Δw| / sum |lr · v|.", ""]
    for model in MODELS:
        rows = [r for r in summary if r["model"] == model]
        if not rows:
            continue
        h = hypers[model]
        lines += [f"## {model.upper()}", "",
                  f"batch {h['batch']}, {h['epochs']} epochs, lr {h['lr']} (x0.1 from epoch "
                  f"{int(h['schedule'][0][0] * h['epochs']) + 1}, x0.01 from epoch "
                  f"{int(h['schedule'][1][0] * h['epochs']) + 1}), momentum {h['momentum']}, "
                  f"weight decay {h['weight_decay']}, loss scale {h['loss_scale']:g}; seeds "
                  f"{', '.join(map(str, rows[0]['seeds']))}", "",
                  "| config | test accuracy % | Δ vs fp32 | train loss | wgrad err | "
                  "update ratio | s/run |", "|---|---|---|---|---|---|---|"]
        ref = next((r["test_accuracy"][0] for r in rows if r["config"] == "fp32"), None)
        for r in sorted(rows, key=lambda r: list(CONFIGS).index(r["config"])):
            m, sd = r["test_accuracy"]
            delta = f"{m - ref:+.2f}" if ref is not None else ""
            lm, ls = r["train_loss"]
            err = (" / ".join(f"{v:.2%}" for v in r["wgrad_rel_error"].values())
                   if "wgrad_rel_error" in r else "")
            ratio = f"{r['update_ratio_last_epoch']:.2f}" if "update_ratio_last_epoch" in r else ""
            lines.append(f"| `{r['config']}` | {m:.2f} ± {sd:.2f} | {delta} | {lm:.4f} ± "
                         f"{ls:.4f} | {err} | {ratio} | {r['seconds']:.1f} |")
        lines.append("")
    lines.append(f"Total time of the run: {elapsed / 60:.1f} min on one core.")
    return "\n".join(lines) + "\n"


def plot_curves(results, path, model):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for config in CONFIGS:
        rs = [r for r in results if r["model"] == model and r["config"] == config]
        if not rs:
            continue
        ep = [p["epoch"] for p in rs[0]["curve"]]
        acc = np.mean([[p["test_accuracy"] for p in r["curve"]] for r in rs], axis=0)
        loss = np.mean([[p["train_loss"] for p in r["curve"]] for r in rs], axis=0)
        style = "-" if config in ("fp32", "fp8", "hfp8") else "--"
        axes[0].plot(ep, acc, style, label=config)
        axes[1].semilogy(ep, loss, style, label=config)
    axes[0].set(xlabel="epoch", ylabel="test accuracy % (mean over seeds)",
                title=f"{model.upper()} on load_digits")
    axes[0].set_ylim(90, 100)
    axes[1].set(xlabel="epoch", ylabel="training loss (mean over seeds)",
                title=f"{model.upper()}: training loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def run_all(out_dir, seeds=(1, 2, 3), models=MODELS, configs=tuple(CONFIGS), epochs=None,
            stream=None):
    """Every model, configuration and seed; writes ``training.md``, ``training.json`` and
    ``training-<model>.png`` to ``out_dir``. Returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_data()
    results, t0 = [], time.perf_counter()
    for model in models:
        for config in configs:
            for seed in seeds:
                results.append(train(model, config, seed, epochs, data=data, stream=stream))
    elapsed = time.perf_counter() - t0
    summary = summarise(results)
    hypers = {r["model"]: r["hyper"] for r in results}
    write_text(out_dir / "training.md", markdown_table(summary, hypers, elapsed))
    write_text(out_dir / "training.json", json.dumps(
        {"summary": summary, "seconds": elapsed, "runs": results}, indent=1) + "\n")
    for model in models:
        plot_curves(results, out_dir / f"training-{model}.png", model)
    return summary, elapsed


# Command line -----------------------------------------------------------------------------------

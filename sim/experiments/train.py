"""``fp8accel train``: networks trained in PyTorch with the accelerator's numerics.

Ref: docs/numerics.md sections 4-5; docs/training.md ("Method", "Hyper-parameters", "Results").

The models are ordinary PyTorch models; :func:`sim.pt.convert` gives their ``Linear`` and
``Conv2d`` layers the accelerator's GEMMs (FP8 operands, chunked DLFLOAT16 accumulation, through
the golden model's kernels), and :class:`sim.pt.SGD` updates DLFLOAT16 master weights bit for bit
as the update unit does; autograd does the rest. ReLU, pooling, softmax and the loss run on the
host in float64 (float32 for the ``fp32`` reference, which is the same model left as PyTorch
made it, trained with ``torch.optim.SGD``).

Data sets: scikit-learn's bundled ``load_digits`` (1797 8x8 images, 10 classes; one fixed
stratified split, 1437 training and 360 test images) and MNIST-1D (4000 training and 1000 test
sequences of 40 values, generated offline from the ``mnist1d`` package's templates with its
default arguments). The seed sets the initialisation, the order of the batches and the
stochastic-rounding seeds, and is the same for every configuration.
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
from fp8accel.sim.pt.numerics import CONFIGS

__all__ = ["CONFIGS", "MODELS", "DATASETS", "Hyper", "HYPER", "load_data", "make_model",
           "mlp_from_arrays", "train_step", "train", "run_all", "summarise", "results_name"]

MODELS = ("mlp", "cnn")
DATASETS = ("digits", "mnist1d")


@dataclass(frozen=True)
class Hyper:
    """Hyper-parameters of one model on one data set (the same for every configuration)."""
    batch: int
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: Learning rate ``lr * factor`` from ``epoch >= start * epochs``, in order.
    schedule: tuple = ((0.5, 0.1), (0.75, 0.01))


HYPER = {
    # 1437 / 128: 12 steps per epoch, 360 steps; the weight-gradient GEMMs reduce over K = 128.
    ("digits", "mlp"): Hyper(batch=128, epochs=30, lr=0.05),
    # The first convolution's weight-gradient GEMM reduces over K = 128 * 8 * 8 = 8192
    # positions, the second's over 128 * 4 * 4 = 2048.
    ("digits", "cnn"): Hyper(batch=128, epochs=30, lr=0.1),
    # 4000 / 100: 40 steps per epoch.
    ("mnist1d", "mlp"): Hyper(batch=100, epochs=60, lr=0.1),
    # The first convolution's weight-gradient GEMM reduces over K = 100 * 19 = 1900 positions.
    ("mnist1d", "cnn"): Hyper(batch=100, epochs=100, lr=0.05),
}


def lr_at(hyper, epoch):
    lr = hyper.lr
    for start, factor in hyper.schedule:
        if epoch >= start * hyper.epochs:
            lr = hyper.lr * factor
    return lr


def load_data(dataset="digits"):
    """``(x_train, y_train, x_test, y_test)`` as float64 and int64 arrays: digits images
    ``(n, 8, 8)`` scaled to [0, 1], MNIST-1D sequences ``(n, 40)`` as generated."""
    if dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float64)
        y = digits.target.astype(np.int64)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, random_state=0,
                                                  stratify=y)
        return x_tr, y_tr, x_te, y_te
    if dataset == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset
        d = make_dataset(get_dataset_args())
        return (np.asarray(d["x"], np.float64), np.asarray(d["y"], np.int64),
                np.asarray(d["x_test"], np.float64), np.asarray(d["y_test"], np.int64))
    raise ValueError(f"Dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")


def make_model(dataset, kind, seed=0):
    """A float32 PyTorch model, initialised as PyTorch initialises its layers from ``seed``.

    digits: MLP 64-128-64-10; CNN conv 3x3 1->16, max-pool 2x2, conv 3x3 16->32, max-pool,
    dense 128->10 (padding 1). MNIST-1D: MLP 40-100-100-10; CNN the ``mnist1d`` package's:
    three convolutions of 25 channels (kernel 5 then 3, stride 2, padding 1) and dense
    125->10, as ``Conv2d`` over a 1 x 40 image. ReLU after every layer but the last. The
    digits models are initialised He normal with zero biases, the MNIST-1D models as PyTorch
    initialises them (as the ``mnist1d`` baselines are).
    """
    import torch
    from torch import nn
    if dataset not in DATASETS:
        raise ValueError(f"Dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")
    if kind not in MODELS:
        raise ValueError(f"Model must be one of {', '.join(MODELS)}, not {kind!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _make_model(nn, dataset, kind)
        if dataset == "digits":
            # He normal weights and zero biases, as the digits results have always used.
            for m in model.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        return model


def mlp_from_arrays(params):
    """A float64 PyTorch MLP with the given weights and biases (``[(w, b), ...]``, NumPy
    arrays, ``w`` of shape ``(out, in)``), ReLU between the layers."""
    import torch
    from torch import nn
    layers = []
    for w, b in params:
        layer = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _make_model(nn, dataset, kind):
    if dataset == "digits" and kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64),
                             nn.ReLU(), nn.Linear(64, 10))
    if dataset == "digits":
        return nn.Sequential(nn.Unflatten(1, (1, 8)), nn.Conv2d(1, 16, 3, padding=1),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                             nn.Linear(100, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 1, 40)),
                         nn.Conv2d(1, 25, (1, 5), (1, 2), (0, 1)), nn.ReLU(),
                         nn.Conv2d(25, 25, (1, 3), (1, 2), (0, 1)), nn.ReLU(),
                         nn.Conv2d(25, 25, (1, 3), (1, 2), (0, 1)), nn.ReLU(),
                         nn.Flatten(), nn.Linear(125, 10))


def softmax_xent(logits, y):
    """Mean cross-entropy of float64 ``logits`` (NumPy) and its gradient, on the host."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(np.maximum(p[np.arange(len(y)), y], 1e-300)).mean()
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    return loss, d / len(y)


def train_step(model, optimizer, x, y, loss_scale=1.0, seeds=None):
    """One SGD step on the batch ``x`` (a tensor) with labels ``y``: forward, the loss on the
    host, backward from the loss-scaled logit gradient, the update (``seeds``: see
    :meth:`sim.pt.SGD.step`). Returns the loss."""
    import torch
    logits = model(x)
    loss, d = softmax_xent(logits.detach().double().numpy(), y)
    optimizer.zero_grad(set_to_none=True)
    logits.backward(torch.from_numpy(d * loss_scale).to(logits.dtype))
    if seeds is None:
        optimizer.step()
    else:
        optimizer.step(seeds=seeds)
    return float(loss)


class Diagnostics:
    """What the GEMMs and updates of a run did: per layer, the relative error of the
    weight-gradient GEMM against float64 on the same FP8 operands; the number of GEMMs and of
    emulated multiply-accumulates; the weight change the updates made and the one they asked
    for (sum of ``|lr * v|``)."""

    def __init__(self):
        self.gemms = self.macs = 0
        self.reset()

    def reset(self):
        self.wgrad_err = {}
        #: The layers in the order of their forward GEMMs, first to last.
        self.order = []
        self.updates = [0.0, 0.0]

    def __call__(self, kind, layer, A, B, out, a_fmt, b_fmt):
        self.gemms += 1
        self.macs += A.shape[0] * A.shape[1] * B.shape[1]
        if kind == "forward" and layer not in self.order:
            self.order.append(layer)
        if kind == "wgrad":
            exact = golden.decode(A, a_fmt) @ golden.decode(B, b_fmt)
            err = np.linalg.norm(out.numpy() - exact) / max(np.linalg.norm(exact), 1e-300)
            self.wgrad_err.setdefault(layer, []).append(err)

    def update(self, optimizer, before, lr, loss_scale):
        dl = golden.DLFLOAT16
        for p, w0 in before.items():
            w1 = golden.decode(optimizer.master(p).numpy(), dl)
            self.updates[0] += float(np.abs(w1 - golden.decode(w0, dl)).sum())
            v = golden.decode(optimizer.momentum(p).numpy(), dl)
            self.updates[1] += float(np.abs(v).sum() * lr / loss_scale)


def evaluate(model, x, y, batch=500):
    """Accuracy in per cent of ``model`` on the tensor ``x`` with labels ``y``."""
    import torch
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(x[i:i + batch])
            correct += int((logits.argmax(dim=1).numpy() == y[i:i + batch]).sum())
    return 100.0 * correct / len(x)


def train(model_kind, config_name, seed=1, epochs=None, data=None, progress=True,
          stream=None, hyper=None, dataset="digits"):
    """Train one model with one configuration; returns the result as a dict (see
    docs/training.md for the fields)."""
    from fp8accel.sim.pt import require_torch
    torch = require_torch()
    from fp8accel.sim.pt import SGD, convert, observe
    if dataset not in DATASETS:
        raise ValueError(f"Dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")
    if config_name not in CONFIGS:
        raise ValueError(f"Config must be one of {', '.join(CONFIGS)}, not {config_name!r}")
    if model_kind not in MODELS:
        raise ValueError(f"Model must be one of {', '.join(MODELS)}, not {model_kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, not {seed!r}")
    config = CONFIGS[config_name]
    hyper = hyper or HYPER[dataset, model_kind]
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"Epochs must be at least 1, not {epochs}")
        hyper = Hyper(**{**asdict(hyper), "epochs": int(epochs)})
    x_tr, y_tr, x_te, y_te = data if data is not None else load_data(dataset)
    model = make_model(dataset, model_kind, seed)
    # Shuffling and stochastic-rounding seeds: one stream per seed, the same for every config.
    order_rng = np.random.default_rng([seed, 1])
    sr_seed = int(np.random.default_rng([seed, 2]).integers(1, 1 << 32))
    if config.fp32:
        dtype, scale = torch.float32, 1.0
        opt = torch.optim.SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum,
                              weight_decay=hyper.weight_decay)
    else:
        # The host's arithmetic in float64; the parameters hold DLFLOAT16 values (exact).
        dtype, scale = torch.float64, config.loss_scale
        model = convert(model, config).to(dtype)
        opt = SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum,
                  weight_decay=hyper.weight_decay, loss_scale=scale, rounding=config.update,
                  seed=sr_seed)
    xt_tr, xt_te = torch.from_numpy(x_tr).to(dtype), torch.from_numpy(x_te).to(dtype)
    diag = Diagnostics()
    steps = -(-len(x_tr) // hyper.batch)
    # The bar shows the quantities the result records, under their names: train_loss is the
    # mean loss of the epoch's batches so far, the epoch's train_loss at its last batch.
    bar = (Progress(hyper.epochs * steps, desc=f"{model_kind}/{config_name}/seed {seed}",
                    unit="batch", file=stream) if progress else nullcontext())
    curve = []
    t0 = time.perf_counter()
    with bar, (nullcontext() if config.fp32 else observe(diag)):
        for epoch in range(hyper.epochs):
            lr = lr_at(hyper, epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            perm = order_rng.permutation(len(x_tr))
            losses = []
            model.train()
            for s in range(steps):
                idx = perm[s * hyper.batch:(s + 1) * hyper.batch]
                before = (None if config.fp32 else
                          {p: opt.master(p).numpy().copy() for p in model.parameters()})
                losses.append(train_step(model, opt, xt_tr[idx], y_tr[idx], scale))
                if before is not None:
                    diag.update(opt, before, lr, scale)
                if progress:
                    bar.update(1, epoch=epoch + 1, train_loss=float(np.mean(losses)))
            model.eval()
            acc = evaluate(model, xt_te, y_te)
            point = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)),
                     "test_accuracy": acc}
            if not config.fp32:
                point["update_ratio"] = diag.updates[0] / max(diag.updates[1], 1e-300)
                point["wgrad_rel_error"] = {k: float(np.mean(diag.wgrad_err[k]))
                                            for k in diag.order if k in diag.wgrad_err}
            curve.append(point)
            diag.reset()
            if progress:
                bar.update(0, force=True, train_loss=point["train_loss"], test_accuracy=acc)
        seconds = time.perf_counter() - t0
        train_acc = evaluate(model, xt_tr, y_tr)
    return {"dataset": dataset, "model": model_kind, "config": config_name, "seed": int(seed),
            "numerics": asdict(config), "hyper": asdict(hyper),
            "final_test_accuracy": curve[-1]["test_accuracy"], "final_train_accuracy": train_acc,
            "final_train_loss": curve[-1]["train_loss"], "curve": curve,
            "gemms": diag.gemms, "emulated_macs": diag.macs, "seconds": seconds}


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


def results_name(dataset):
    """The stem of the files of ``fp8accel train --all`` for ``dataset``."""
    return "training" if dataset == "digits" else f"training-{dataset}"


_TEST_SET = {"digits": "360 held-out images", "mnist1d": "the 1000 test sequences"}
_TITLE = {"digits": "load_digits", "mnist1d": "MNIST-1D"}


def markdown_table(summary, hypers, elapsed, dataset="digits"):
    flag = "" if dataset == "digits" else f" --dataset {dataset}"
    lines = [f"# Training results: {_TITLE[dataset]}", "",
             f"Produced by `fp8accel train --all{flag}` (see docs/training.md). Final test "
             f"accuracy ({_TEST_SET[dataset]}) and training loss after the last epoch, mean ± standard "
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
        loss_scale = CONFIGS["fp8"].loss_scale
        lines += [f"## {model.upper()}", "",
                  f"batch {h['batch']}, {h['epochs']} epochs, lr {h['lr']} (x0.1 from epoch "
                  f"{int(h['schedule'][0][0] * h['epochs']) + 1}, x0.01 from epoch "
                  f"{int(h['schedule'][1][0] * h['epochs']) + 1}), momentum {h['momentum']}, "
                  f"weight decay {h['weight_decay']}, loss scale {loss_scale:g}; seeds "
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


def plot_curves(results, path, model, dataset="digits"):
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
                title=f"{model.upper()} on {_TITLE[dataset]}")
    if dataset == "digits":
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
            stream=None, dataset="digits"):
    """Every model, configuration and seed on ``dataset``; writes ``<name>.md``,
    ``<name>.json`` and ``<name>-<model>.png`` to ``out_dir``, ``<name>`` from
    :func:`results_name`. Returns the summary and the time taken."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_data(dataset)
    results, t0 = [], time.perf_counter()
    for model in models:
        for config in configs:
            for seed in seeds:
                results.append(train(model, config, seed, epochs, data=data, stream=stream,
                                     dataset=dataset))
    elapsed = time.perf_counter() - t0
    summary = summarise(results)
    hypers = {r["model"]: r["hyper"] for r in results}
    name = results_name(dataset)
    write_text(out_dir / f"{name}.md", markdown_table(summary, hypers, elapsed, dataset))
    write_text(out_dir / f"{name}.json", json.dumps(
        {"dataset": dataset, "summary": summary, "seconds": elapsed, "runs": results},
        indent=1) + "\n")
    for model in models:
        plot_curves(results, out_dir / f"{name}-{model}.png", model, dataset)
    return summary, elapsed

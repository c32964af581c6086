"""``fp8accel train``: the command line of :mod:`fp8accel.sim.experiments.train`."""

import json

from fp8accel.sim.cli.util import (
    CliError,
    check_output_dir,
    check_output_file,
    non_negative_int,
    positive_int,
)
from fp8accel.sim.experiments.train import (
    CONFIGS,
    DATASETS,
    MODELS,
    results_name,
    run_all,
    train,
)
from fp8accel.sim.files import write_text

__all__ = ["add_train_parser"]


def _require_torch(dataset):
    from fp8accel.sim.pt import require_torch
    try:
        require_torch()
    except ImportError as exc:
        raise CliError(str(exc)) from None
    if dataset == "mnist1d":
        try:
            import mnist1d  # noqa: F401
        except ImportError:
            raise CliError('mnist1d is not installed: pip install -e ".[torch]" '
                           '(or pip install mnist1d)') from None


def _run_cli(args):
    if args.all:
        for flag, value in (("--model", args.model), ("--config", args.config),
                            ("--json", args.json)):
            if value is not None:
                raise CliError(f"--all runs every model and config; drop {flag}")
        models = args.models.split(",") if args.models else list(MODELS)
        bad = [m for m in models if m not in MODELS]
        if bad:
            raise CliError(f"unknown model {bad[0]!r} in --models (choose from "
                           f"{', '.join(MODELS)})")
        check_output_dir(args.out)
        _require_torch(args.dataset)
        summary, elapsed = run_all(args.out, range(args.seed, args.seed + args.seeds), models,
                                   epochs=args.epochs, dataset=args.dataset)
        for r in summary:
            m, sd = r["test_accuracy"]
            print(f"{r['model']:4} {r['config']:12} test accuracy {m:6.2f} ± {sd:.2f} %")
        name = results_name(args.dataset)
        print(f"Wrote {args.out}/{name}.md, {name}.json and the plots "
              f"({elapsed / 60:.1f} min)")
        return 0
    missing = [f for f, v in (("--model", args.model), ("--config", args.config),
                              ("--json", args.json)) if v is None]
    if missing:
        raise CliError(f"{', '.join(missing)} required (or --all)")
    out = check_output_file(args.json, "--json")
    _require_torch(args.dataset)
    result = train(args.model, args.config, args.seed, args.epochs, dataset=args.dataset)
    write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"{args.dataset} {args.model} {args.config} seed {args.seed}: test accuracy "
          f"{result['final_test_accuracy']:.2f} % after {len(result['curve'])} epochs "
          f"({result['seconds']:.1f} s); wrote {out}")
    return 0


def add_train_parser(sub):
    p = sub.add_parser(
        "train", help="train a small network in PyTorch with the accelerator's numerics",
        description="Train an MLP or a small CNN on load_digits or MNIST-1D in PyTorch with "
                    "every GEMM through the golden model (FP8 operands, chunked DLFLOAT16 "
                    "accumulation) and SGD updates of DLFLOAT16 master weights "
                    "(docs/training.md). Needs PyTorch: pip install -e \".[torch]\". A "
                    "progress bar goes to stderr.")
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="load_digits (8x8 images) or MNIST-1D (generated offline by the "
                        "mnist1d package) (default: %(default)s)")
    p.add_argument("--model", choices=MODELS, help="network")
    p.add_argument("--config", choices=list(CONFIGS),
                   help="numerics: " + "; ".join(f"{c.name}: {c.what}"
                                                 for c in CONFIGS.values()))
    p.add_argument("--seed", type=non_negative_int("--seed"), default=1,
                   help="initialisation, batch order and rounding seed (default: "
                        "%(default)s; with --all the first seed)")
    p.add_argument("--epochs", type=positive_int("--epochs"),
                   help="epochs (default: the model's, see docs/training.md)")
    p.add_argument("--json", help="write the result (final accuracy, per-epoch curve) here")
    p.add_argument("--all", action="store_true", help="every model and config over several "
                   "seeds: table and plots in --out")
    p.add_argument("--seeds", type=positive_int("--seeds"), default=3,
                   help="with --all: seeds per config (default: %(default)s)")
    p.add_argument("--models", help="with --all: comma-separated subset of the models")
    p.add_argument("--out", default="results", help="with --all: output directory, created "
                   "if missing (default: %(default)s)")
    p.set_defaults(func=_run_cli)

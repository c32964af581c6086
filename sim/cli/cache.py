"""``fp8accel cache``: the simulator models that ``demo``, ``gemm``, ``update`` and the tests
share (:mod:`fp8accel.sim.run.runner`): where they are, what they take, and clearing them."""

__all__ = ["add_cache_parser", "run_cache_cli"]


def add_cache_parser(sub):
    p = sub.add_parser(
        "cache", help="show or clear the cache of built simulator models",
        description="Every simulated design is built once (Verilator or Icarus) and kept in "
                    "the model cache, keyed by its Verilog, the simulator and its version and "
                    "the build flags: $FP8ACCEL_CACHE, else $XDG_CACHE_HOME/fp8accel, else "
                    "~/.cache/fp8accel. Without options, list the models.")
    p.add_argument("--clear", action="store_true", help="remove every model")
    p.set_defaults(func=run_cache_cli)


def _size(n):
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def run_cache_cli(args):
    from fp8accel.sim.run.runner import cache_dir, cached_models, clear_cache

    root = cache_dir()
    if args.clear:
        n = clear_cache(root)
        print(f"fp8accel cache: removed {n} model{'s' * (n != 1)} from {root}")
        return 0
    models = cached_models(root)
    total = sum(size for _, _, size, _ in models)
    print(f"{root}: {len(models)} model{'s' * (len(models) != 1)}, {_size(total)}")
    for name, _, size, info in models:
        print(f"  {name:<44} {_size(size):>9}  built {info.get('built', '?')} in "
              f"{info.get('build_s', 0):.1f} s ({info.get('version', '?')})")
    return 0

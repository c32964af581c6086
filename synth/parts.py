"""Where the accelerator's logic goes: ``fp8accel synth parts``.

Each part of :class:`hw.top.Accelerator` (the submodules its ``elaborate`` builds: the GEMM
engine and, inside it, the systolic array; the update unit; the register block; the transfer
logic and converters; the command queue) is synthesised on its own with Yosys, with the
parameters it has in the top, its ports registered (:class:`synth.flow.RegisteredIO`; the
registers are not counted). The top's own logic (its command decoding and transfer control)
is the top's count minus every part's.

Counts are Yosys's (:func:`synth.flow.estimate_luts`), before place and route: a part
synthesised alone loses the optimisations across its ports that the whole design gets, so the
parts add up to a little more than the top; the difference is reported as it is.
"""

from amaranth.hdl import Fragment, Value

from .flow import synthesize, unit_factory

__all__ = ["parts_study", "parts_markdown"]


def _cells(result, design):
    cells = result["yosys_cells"]
    # The wrapper registers every port bit: those flip-flops are not the part's.
    ports = sum(len(Value.cast(v)) for _, _, v in design.signature.flatten(design))
    return {"ff": cells.get("TRELLIS_FF", 0) + cells.get("SB_DFF", 0) - ports,
            "bram": cells.get("DP16KD", 0) + cells.get("SB_RAM40_4K", 0),
            "dsp": cells.get("MULT18X18D", 0) + cells.get("SB_MAC16", 0)}


def parts_study(target, *, rows=8, cols=8, progress=None, workdir=None):
    """Yosys's LUTs, flip-flops, block RAMs and DSPs of the ``rows x cols`` top and of each of
    its parts; returns a JSON-ready dict with ``parts`` (name, class, ``luts``, ``ff``, ``bram``, ``dsp``), the top's
    totals under ``top``, ``around_array`` (top minus array) and ``own`` (the top's logic
    outside every part)."""
    import os

    say = progress or (lambda message: None)
    factory, config = unit_factory("top", rows=rows, cols=cols)
    top = factory()

    def run(name, design):
        say(f"{name}: yosys ...")
        wd = None if workdir is None else os.path.join(workdir, name)
        result = synthesize(design, target, estimate_only=True, workdir=wd, progress=None)
        row = {"part": name, "class": type(design).__name__, "luts": result["yosys_luts"],
               **_cells(result, design), "yosys_seconds": result["seconds"]["yosys"]}
        say(f"{name}: {row['luts']:,} LUTs")
        return row

    whole = run("top", top)
    # The parts as the top builds them: its submodules, from its elaboration.
    parts = []
    for sub, name, _ in Fragment.get(factory(), None).subfragments:
        design = sub.origins[0]
        parts.append(run(name, design))
        if name == "engine":
            parts.append(run("engine.array", design.array))
    array = next(p for p in parts if p["part"] == "engine.array")
    engine = next(p for p in parts if p["part"] == "engine")
    # The engine's own logic is the engine minus its array.
    engine_own = {k: engine[k] - array[k] for k in ("luts", "ff", "bram", "dsp")}
    top_parts = [p for p in parts if "." not in p["part"]]
    own = {k: whole[k] - sum(p[k] for p in top_parts) for k in ("luts", "ff", "bram", "dsp")}
    return {"target": target, "rows": rows, "cols": cols, "config": config, "top": whole,
            "parts": parts, "engine_own": engine_own, "own": own,
            "around_array": whole["luts"] - array["luts"]}


def parts_markdown(study):
    """The table of :func:`parts_study`, in Markdown."""
    top = study["top"]
    lines = [f"Where the LUTs go: the {study['rows']}x{study['cols']} accelerator top on "
             f"{study['target']}, each part synthesised alone (Yosys's counts).", "",
             "| part | class | LUTs | % of top | FFs | BRAM | DSP |",
             "|---|---|---:|---:|---:|---:|---:|"]

    def line(name, cls, row):
        share = 100 * row["luts"] / top["luts"]
        lines.append(f"| {name} | {cls} | {row['luts']:,} | {share:.1f} | {row['ff']:,} | "
                     f"{row['bram']} | {row['dsp']} |")

    for p in study["parts"]:
        if p["part"] == "engine":
            line("engine (with the array)", p["class"], p)
        elif p["part"] == "engine.array":
            line("  array", p["class"], p)
            line("  engine without the array", "", study["engine_own"])
        else:
            line(p["part"], p["class"], p)
    line("the top's own logic (top minus every part)", "", study["own"])
    line("**top**", "Accelerator", top)
    lines += ["", f"Logic around the array (top minus array): **{study['around_array']:,}** "
                  f"LUTs."]
    return "\n".join(lines) + "\n"


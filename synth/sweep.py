"""Many synthesis runs, one table: the size and format sweep, and the area study.

``fp8accel synth sweep`` places and routes a unit (the accelerator top by default) for every
array size and format pair asked for, ``--seeds`` runs each, and writes one row per point:
LUT/FF/DSP/BRAM, the median Fmax, the peak throughput ``2 * rows * cols * Fmax`` and that
throughput per 1,000 LUTs.

``fp8accel synth area`` measures the paper's hardware claim with the same flow: the processing
element and an 8x8 array for

* (a) E5M2/E4M3 operands, DLFLOAT16 chunk-based accumulation (ours);
* (b) BINARY16 operands, BINARY32 accumulation, one running sum (the 2018 mainstream);
* (c) BINARY16 operands, BINARY16 accumulation, one running sum;
* (b-dsp), (c-dsp): (b) and (c) with the significand product in a DSP block;

and reports the logic per multiply-accumulate (MAC) and its ratio to (a), counting LUTs only
and with a DSP block counted as the share of the device's LUTs it is.

A point whose netlist needs more LUTs than the device has is not placed: its row gives Yosys's
count and ``fits: false``.
"""

import json
import os
from contextlib import nullcontext

from fp8accel.sim.files import save_figure, write_text
from fp8accel.sim.progress import Progress

from .flow import TARGETS, DoesNotFit, SynthError, synthesize_unit

__all__ = ["AREA_CONFIGS", "parse_sizes", "parse_formats", "sweep", "area_study", "area_point",
           "area_summary", "area_ratios", "area_ratios_dsp", "dsp_exchange_rate",
           "sweep_markdown", "area_markdown", "plot_sweep"]

#: The area study's configurations: ``key -> (in_fmt, acc_fmt, chunked, product,
#: description)``; ``product`` is the multiplier's (``"logic"`` or ``"dsp"``, see
#: :class:`hw.fp.multiplier.FPMultiplier`).
AREA_CONFIGS = {
    "a": ("fp8", "dlfloat16", True, "logic",
          "E5M2/E4M3 x E5M2/E4M3, DLFLOAT16 chunked accumulation"),
    "b": ("binary16", "binary32", False, "logic", "BINARY16 x BINARY16, BINARY32 accumulation"),
    "b-dsp": ("binary16", "binary32", False, "dsp",
              "BINARY16 x BINARY16 in a DSP block, BINARY32 accumulation"),
    "c": ("binary16", "binary16", False, "logic", "BINARY16 x BINARY16, BINARY16 accumulation"),
    "c-dsp": ("binary16", "binary16", False, "dsp",
              "BINARY16 x BINARY16 in a DSP block, BINARY16 accumulation"),
}


def parse_sizes(text):
    """``"2x2,4x4,8x8"`` as ``[(2, 2), (4, 4), (8, 8)]``."""
    sizes = []
    for item in str(text).split(","):
        parts = item.strip().lower().split("x")
        try:
            rows, cols = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"Array size {item.strip()!r} is not ROWSxCOLS, e.g. 4x4") from None
        if not (1 <= rows <= 64 and 1 <= cols <= 64):
            raise ValueError(f"Array size {item.strip()!r}: rows and columns must be 1 to 64")
        sizes.append((rows, cols))
    return sizes


def parse_formats(text):
    """``"fp8/dlfloat16,binary16/binary32/conventional"`` as
    ``[("fp8", "dlfloat16"), ("binary16", "binary32", False)]``: operand format / accumulator
    format, and ``/conventional`` for an array with one running sum instead of chunks (the
    third item, ``chunked``, is present only then)."""
    from fp8accel.hw.fp.format import format_by_name
    formats = []
    for item in str(text).split(","):
        parts = item.strip().lower().split("/")
        conventional = len(parts) == 3 and parts[2] == "conventional"
        if len(parts) != 2 and not conventional:
            raise ValueError(f"Format {item.strip()!r} is not IN/ACC or IN/ACC/conventional, "
                             f"e.g. fp8/dlfloat16")
        for name in parts[:2]:
            if name != "fp8":
                format_by_name(name)
        formats.append((parts[0], parts[1], False) if conventional else tuple(parts))
    return formats


def _point_progress(progress, label):
    """The per-step callback of :func:`synthesize`: shows its message on ``progress`` and
    advances it on every finished tool run (Yosys, then each seed)."""
    if progress is None:
        return None

    def say(message):
        finished = message.endswith(" s)") or (message.startswith("yosys:")
                                             and message.endswith(" s"))
        progress.update(1 if finished else 0, status=f"{label}: {message}")
    return say


def _progress(progress, total, desc):
    """The report of a sweep of ``total`` tool runs: a new :class:`Progress` (closed at the
    end of the ``with`` block) for ``True``, none for ``False``, else the caller's."""
    if progress is True:
        return Progress(total, desc=desc, unit="run")
    return nullcontext(progress or None)


def _row(unit, rows, cols, in_fmt, acc_fmt, chunked, result, target, seeds):
    """One table row from a :func:`synthesize_unit` result (or a :class:`DoesNotFit`).

    ``placed`` says whether nextpnr ran; when it did not (the design does not fit, or only
    Yosys was asked for), ``comb`` and ``dsp`` are Yosys's counts and ``fits`` says whether
    Yosys's count fits the device."""
    macs = rows * cols
    row = {"unit": unit, "rows": rows, "cols": cols, "macs": macs, "in_fmt": in_fmt,
           "acc_fmt": acc_fmt, "chunked": chunked, "target": target, "seeds": seeds}
    if isinstance(result, DoesNotFit) or "fmax_mhz" not in result:
        if isinstance(result, DoesNotFit):
            luts, cells, fits, secs = result.estimate, result.cells, False, result.seconds
        else:
            luts, cells = result["yosys_luts"], result["yosys_cells"]
            fits, secs = result["fits"], result["seconds"]
        row.update({"fits": fits, "placed": False, "fmax_mhz": None, "fmax_per_seed": [],
                    "comb": luts, "ff": None, "dsp": _yosys_dsps(cells), "bram": None,
                    "yosys_luts": luts, "timing_met": False,
                    "peak_gflops": None, "gflops_per_klut": None, "seconds": secs})
        return row
    fmax = result["fmax_mhz"]
    peak = None if fmax is None else 2 * macs * fmax / 1000.0
    row.update({
        "fits": True, "placed": True, "fmax_mhz": fmax, "fmax_per_seed": result["fmax_per_seed"],
        "comb": result["comb"], "ff": result["ff"], "dsp": result["dsp"],
        "bram": result["bram"], "yosys_luts": result["yosys_luts"],
        "lutram": result["utilization"].get("TRELLIS_RAMW", 0) if result["utilization"] else 0,
        "freq_mhz": result["freq_mhz"], "timing_met": result["timing_met"],
        "peak_gflops": None if peak is None else round(peak, 3),
        "gflops_per_klut": None if peak is None else round(peak / (result["comb"] / 1000.0), 4),
        "seconds": result["seconds"],
    })
    return row


def _yosys_dsps(cells):
    """DSP blocks in Yosys's cell counts (ECP5 ``MULT18X18D``, iCE40 ``SB_MAC16``)."""
    return cells.get("MULT18X18D", 0) + cells.get("SB_MAC16", 0)


def _placed(row):
    """Whether nextpnr placed the row (rows written before ``placed`` existed: ``fits``)."""
    return row.get("placed", row["fits"])


def _check_point(unit, in_fmt, acc_fmt, chunked):
    if unit == "top" and (in_fmt != "fp8" or not chunked):
        raise ValueError(f"The accelerator top takes FP8 operands and accumulates in chunks;"
                         f" {in_fmt}/{acc_fmt} is for the pe and array units")


def _run_point(unit, target, rows, cols, in_fmt, acc_fmt, chunked, *, seeds, freq_mhz, jobs,
               progress, workdir, product="logic", estimate_only=False):
    dsp = "" if product == "logic" else f" {product}"
    label = (f"{unit}{'' if unit == 'pe' else f' {rows}x{cols}'} {in_fmt}/{acc_fmt}"
             f"{'' if chunked else ' conventional'}{dsp}")
    opts = {"in_fmt": in_fmt, "acc_fmt": acc_fmt, "chunked": chunked}
    if product != "logic":
        opts["product"] = product
    _check_point(unit, in_fmt, acc_fmt, chunked)
    if unit == "top":
        opts = {"acc_fmt": acc_fmt}
    if unit != "pe":
        opts.update(rows=rows, cols=cols)
    keep = None if workdir is None else os.path.join(
        workdir, f"{unit}-{rows}x{cols}-{in_fmt}-{acc_fmt}{'' if chunked else '-conv'}"
                  f"{dsp.replace(' ', '-')}")
    say = _point_progress(progress, label)
    try:
        result = synthesize_unit(unit, target, seeds=seeds, freq_mhz=freq_mhz, workdir=keep,
                                 progress=say, jobs=jobs, estimate_only=estimate_only, **opts)
    except DoesNotFit as exc:
        if progress is not None:
            # The seeds that will not run count as done.
            progress.update(seeds, status=f"{label}: does not fit: {exc}")
        result = exc
    pe_rows, pe_cols = (1, 1) if unit == "pe" else (rows, cols)
    return _row(unit, pe_rows, pe_cols, in_fmt, acc_fmt, chunked, result,
                TARGETS[target].name if isinstance(target, str) else target.name, seeds)


def sweep(target, *, unit="top", sizes=((2, 2), (4, 4), (8, 8)),
          formats=(("fp8", "dlfloat16"),), chunked=True, seeds=3, freq_mhz=None, jobs=1,
          progress=True, workdir=None):
    """Synthesise ``unit`` for every size and format pair; return the rows.

    Parameters
    ----------
    target : str
    unit : str
        ``"top"`` (the accelerator, buffers for 128^3), ``"array"`` or ``"pe"`` (sizes
        ignored, one PE).
    sizes : sequence of (rows, cols)
    formats : sequence of (in_fmt, acc_fmt) or (in_fmt, acc_fmt, chunked)
        ``in_fmt`` ``"fp8"`` is the accelerator's E5M2/E4M3 operands; a third item overrides
        ``chunked`` for that pair.
    chunked : bool
        ``False``: conventional arrays (``pe`` and ``array`` only).
    seeds, freq_mhz, jobs, workdir
        As for :func:`synth.flow.synthesize`; ``workdir`` keeps one directory per point.
    progress : bool or fp8accel.sim.progress.Progress
        Report progress on standard error (a bar on a terminal, a line per tool run
        otherwise), or on this report (which the caller closes).
    """
    if unit not in ("top", "array", "pe"):
        raise ValueError(f"A sweep runs the top, array or pe unit, not {unit!r}")
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    points = [(r, c, f[0], f[1], f[2] if len(f) > 2 else chunked)
              for (r, c) in (sizes if unit != "pe" else [(1, 1)]) for f in formats]
    # Every point before the first tool run: a bad one would otherwise end the sweep midway.
    for _, _, in_fmt, acc_fmt, ch in points:
        _check_point(unit, in_fmt, acc_fmt, ch)
    rows = []
    with _progress(progress, len(points) * (1 + seeds), "sweep") as bar:
        for r, c, i, a, ch in points:
            rows.append(_run_point(unit, target, r, c, i, a, ch, seeds=seeds,
                                   freq_mhz=freq_mhz, jobs=jobs, progress=bar,
                                   workdir=workdir))
    return rows


def area_study(target, *, rows=8, cols=8, seeds=3, freq_mhz=100.0, jobs=1, progress=True,
               workdir=None, configs=tuple(AREA_CONFIGS), array_seeds=None,
               array_estimate=False):
    """The PE and a ``rows x cols`` array of every :data:`AREA_CONFIGS` configuration.

    ``array_seeds`` (default ``seeds``) bounds the run time of the arrays, whose place and
    route takes minutes a seed where a PE's takes seconds; with ``array_estimate`` the arrays
    stop after Yosys (their rows then give Yosys's counts).

    Returns a dict: ``rows`` (one per configuration and unit, as :func:`sweep`'s, with
    ``config``, ``product`` and ``lut_per_mac``, ``ff_per_mac``, ``dsp_per_mac``,
    ``macs_per_klut``), ``ratio_b_over_a`` and ``ratios`` (see :func:`area_ratios`),
    ``dsp_luts`` (the exchange rate, see :func:`dsp_exchange_rate`) and the run's parameters.
    """
    for key in configs:
        if key not in AREA_CONFIGS:
            raise ValueError(f"Unknown configuration {key!r}; expected one of "
                             f"{', '.join(AREA_CONFIGS)}")
    array_seeds = seeds if array_seeds is None else array_seeds
    out = []
    runs = len(configs) * (2 + seeds + (0 if array_estimate else array_seeds))
    with _progress(progress, runs, "area study") as bar:
        for key in configs:
            for unit in ("pe", "array"):
                n = seeds if unit == "pe" else array_seeds
                row = area_point(key, unit, target, rows, cols, seeds=n, freq_mhz=freq_mhz,
                                 jobs=jobs, progress=bar, workdir=workdir,
                                 estimate_only=unit == "array" and array_estimate)
                out.append(row)
    return area_summary(target, rows, cols, seeds, freq_mhz, out, array_seeds=array_seeds,
                        array_estimate=array_estimate)


def area_point(key, unit, target, rows, cols, *, seeds, freq_mhz, jobs=1, progress=None,
               workdir=None, estimate_only=False):
    """One row of the area study: configuration ``key``'s ``unit`` (``"pe"`` or ``"array"``)."""
    in_fmt, acc_fmt, chunked, product, description = AREA_CONFIGS[key]
    row = _run_point(unit, target, rows, cols, in_fmt, acc_fmt, chunked, seeds=seeds,
                     freq_mhz=freq_mhz, jobs=jobs, progress=progress, workdir=workdir,
                     product=product, estimate_only=estimate_only)
    macs = row["macs"]
    row.update({"config": key, "product": product, "description": description,
                "lut_per_mac": round(row["comb"] / macs, 1),
                "yosys_lut_per_mac": round(row["yosys_luts"] / macs, 1),
                "ff_per_mac": None if row["ff"] is None else round(row["ff"] / macs, 1),
                "dsp_per_mac": None if row["dsp"] is None else round(row["dsp"] / macs, 3),
                "macs_per_klut": round(1000 * macs / row["comb"], 3)})
    return row


def area_summary(target, rows, cols, seeds, freq_mhz, results, *, array_seeds=None,
                 array_estimate=False):
    """The dict :func:`area_study` returns, from its rows."""
    rate = dsp_exchange_rate(target)
    return {"target": target, "rows": rows, "cols": cols, "seeds": seeds,
            "array_seeds": seeds if array_seeds is None else array_seeds,
            "array_estimate": array_estimate,
            "freq_mhz": freq_mhz, "results": results, "dsp_luts": rate,
            "ratio_b_over_a": area_ratios(results),
            "ratios": area_ratios_dsp(results, rate["luts_per_dsp"])}


def dsp_exchange_rate(target):
    """What a DSP block counts as in LUTs: the share of the device it is.

    A DSP block is worth the part of the chip's logic that its share of the chip's DSP blocks
    is: the device's LUT4s over its DSP blocks (LFE5U-85F: 83,640 / 156 = 536). This prices a
    DSP as a resource of a given chip: a design that needs a DSP per MAC runs out of DSP blocks
    at the same fraction of the device as one that needs that many LUTs runs out of LUTs.
    """
    t = TARGETS[target] if isinstance(target, str) else target
    if not t.dsps:
        return {"luts_per_dsp": None, "basis": f"{t.name} has no DSP blocks"}
    return {"luts_per_dsp": round(t.luts / t.dsps, 1),
            "basis": f"device LUT4s / DSP blocks of {t.name}: {t.luts:,} / {t.dsps}"}


def area_ratios(results):
    """LUTs per MAC of (b) over (a), per unit, from :func:`area_study`'s rows.

    Like is compared with like: nextpnr's counts when both were placed, else Yosys's. When (b)
    was not placed but (a) was, ``calibrated`` also scales (b)'s Yosys count by the ratio of
    nextpnr's to Yosys's count on (b)'s PE (packing adds LUTs, more for (a), whose delay
    lines are LUT RAM), the best estimate of what nextpnr would have counted.
    """
    ratio = {}
    pe_b = next((r for r in results if r["unit"] == "pe" and r["config"] == "b"
                 and _placed(r)), None)
    for unit in ("pe", "array"):
        by = {r["config"]: r for r in results if r["unit"] == unit}
        if "a" in by and "b" in by:
            a, b = by["a"], by["b"]
            key = "lut_per_mac" if _placed(a) and _placed(b) else "yosys_lut_per_mac"
            ratio[unit] = {"ratio": round(b[key] / a[key], 2), "from": key}
            if _placed(a) and not _placed(b) and pe_b is not None:
                scale = pe_b["comb"] / pe_b["yosys_luts"]
                ratio[unit]["calibrated"] = round(b["yosys_lut_per_mac"] * scale
                                                  / a["lut_per_mac"], 2)
    return ratio


def area_ratios_dsp(results, luts_per_dsp):
    """LUTs per MAC of every other configuration over (a), per unit: ``luts_only`` counts
    LUTs alone, ``dsp_counted`` adds ``luts_per_dsp`` LUTs for every DSP block (see
    :func:`dsp_exchange_rate`) on both sides. Counts as in :func:`area_ratios`: nextpnr's when
    both rows were placed, else Yosys's."""
    out = {}
    for unit in ("pe", "array"):
        by = {r["config"]: r for r in results if r["unit"] == unit}
        if "a" not in by:
            continue
        a = by["a"]
        for key, r in by.items():
            if key == "a":
                continue
            src = "lut_per_mac" if _placed(a) and _placed(r) else "yosys_lut_per_mac"
            entry = {"luts_only": round(r[src] / a[src], 2), "from": src}
            if luts_per_dsp is not None:
                def priced(row):
                    return row[src] + luts_per_dsp * (row["dsp"] or 0) / row["macs"]
                entry["dsp_counted"] = round(priced(r) / priced(a), 2)
            out.setdefault(unit, {})[key] = entry
    return out


# Reports ---------------------------------------------------------------------------------------

def _fmt(value, spec="", none="–"):
    return none if value is None else format(value, spec)


def _fmax_cell(row):
    if not _placed(row):
        return "not placed (Yosys only)" if row["fits"] else "does not fit"
    seeds = ", ".join(_fmt(f, ".1f") for f in row["fmax_per_seed"])
    return f"{_fmt(row['fmax_mhz'], '.1f')} ({seeds})"


def sweep_markdown(rows, *, title=None):
    """The sweep as a Markdown table."""
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines += ["| unit | array | formats | Fmax MHz, median (seeds) | LUT | FF | DSP | BRAM | "
              "peak GFLOP/s | GFLOP/s per 1k LUT |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmts = f"{r['in_fmt']}/{r['acc_fmt']}{'' if r['chunked'] else ' (conventional)'}"
        lines.append(
            f"| {r['unit']} | {r['rows']}x{r['cols']} | {fmts} | {_fmax_cell(r)} | "
            f"{_fmt(r['comb'], ',')} | {_fmt(r['ff'], ',')} | {_fmt(r['dsp'])} | "
            f"{_fmt(r['bram'])} | {_fmt(r['peak_gflops'], '.2f')} | "
            f"{_fmt(r['gflops_per_klut'], '.3f')} |")
    target = rows[0]["target"] if rows else "?"
    seeds = rows[0]["seeds"] if rows else "?"
    lines += ["", f"Target {target}, nextpnr seeds 1-{seeds}. LUT = nextpnr's TRELLIS_COMB "
                  f"(LUT4s and carry halves); peak = 2 x rows x cols x Fmax.", ""]
    return "\n".join(lines)


def area_markdown(study):
    """The area study as a Markdown table and the ratio."""
    lines = ["| config | unit | MACs | Fmax MHz, median (seeds) | LUT | FF | DSP | LUT/MAC | "
             "FF/MAC | DSP/MAC | MACs per 1k LUT |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in study["results"]:
        unit = "PE" if r["unit"] == "pe" else f"{r['rows']}x{r['cols']} array"
        lut = _fmt(r["comb"], ",") + ("" if _placed(r) else " (Yosys)")
        lines.append(
            f"| ({r['config']}) {r['description']} | {unit} | {r['macs']} | {_fmax_cell(r)} | "
            f"{lut} | {_fmt(r['ff'], ',')} | {_fmt(r['dsp'])} | {r['lut_per_mac']:.1f} | "
            f"{_fmt(r['ff_per_mac'], '.1f')} | {_fmt(r['dsp_per_mac'], '.3f')} | "
            f"{r['macs_per_klut']:.2f} |")
    lines.append("")
    for unit, ratio in study["ratio_b_over_a"].items():
        source = "nextpnr" if ratio["from"] == "lut_per_mac" else "Yosys"
        name = "PE" if unit == "pe" else f"{study['rows']}x{study['cols']} array"
        line = (f"- {name}: LUTs per MAC of (b) / (a) = **{ratio['ratio']:.2f}** "
                f"({source} counts)")
        if "calibrated" in ratio:
            line += (f"; about **{ratio['calibrated']:.2f}** in nextpnr's terms, (b)'s Yosys "
                     f"count scaled by nextpnr/Yosys on its PE")
        lines.append(line)
    ratios = study.get("ratios")
    if ratios:
        rate = study["dsp_luts"]["luts_per_dsp"]
        priced = "–" if rate is None else f"a DSP counted as {rate:g} LUTs"
        lines += ["", f"LUTs per MAC over (a) ({priced}: {study['dsp_luts']['basis']}):", "",
                  f"| unit | config | LUTs only | {priced} | counts |", "|---|---|---|---|---|"]
        for unit, by in ratios.items():
            name = "PE" if unit == "pe" else f"{study['rows']}x{study['cols']} array"
            for key, e in by.items():
                source = "nextpnr" if e["from"] == "lut_per_mac" else "Yosys"
                lines.append(f"| {name} | ({key}) | {e['luts_only']:.2f} | "
                             f"{_fmt(e.get('dsp_counted'), '.2f')} | {source} |")
    array_seeds = study.get("array_seeds", study["seeds"])
    seeds = f"seeds 1-{study['seeds']}"
    if study.get("array_estimate"):
        seeds = f"PEs seeds 1-{study['seeds']}, arrays Yosys only"
    elif array_seeds != study["seeds"]:
        seeds = f"PEs seeds 1-{study['seeds']}, arrays seed{'s 1-' if array_seeds > 1 else ' '}" \
                f"{array_seeds}"
    lines += ["", f"Target {study['target']}, nextpnr --freq {study['freq_mhz']:g}, {seeds}.",
              ""]
    return "\n".join(lines)


def plot_sweep(rows, path, *, title=None):
    """Peak throughput against LUTs, one series per format pair, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series = {}
    for r in rows:
        if r["fits"] and r["peak_gflops"] is not None:
            key = f"{r['unit']} {r['in_fmt']}/{r['acc_fmt']}" + ("" if r["chunked"] else " conv.")
            series.setdefault(key, []).append(r)
    for key, rs in series.items():
        rs = sorted(rs, key=lambda r: r["comb"])
        ax.plot([r["comb"] for r in rs], [r["peak_gflops"] for r in rs], "o-", label=key)
        for r in rs:
            ax.annotate(f"{r['rows']}x{r['cols']}", (r["comb"], r["peak_gflops"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("LUTs (nextpnr TRELLIS_COMB)")
    ax.set_ylabel("peak GFLOP/s (2 x MACs x Fmax)")
    ax.set_title(title or f"fp8accel on {rows[0]['target'] if rows else '?'}")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def write_reports(data, markdown_text, *, json_path=None, markdown_path=None):
    """Write the sweep's or study's data as JSON and its table as Markdown, each through a
    temporary file renamed into place."""
    if json_path is not None:
        write_text(json_path, json.dumps(data, indent=1) + "\n")
    if markdown_path is not None:
        write_text(markdown_path, markdown_text)


__all__ += ["write_reports", "SynthError"]

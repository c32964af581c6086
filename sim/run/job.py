"""The cocotb side of ``fp8accel gemm``, ``demo`` and ``update``: runs inside the simulator,
reads the GEMMs and updates of the job that :func:`fp8accel.sim.run.jobs.run_jobs` wrote into
the configuration, drives the top through :class:`fp8accel.sim.host.AcceleratorHost` and writes
the results and a report of counters and timings."""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.utils import get_sim_time

from fp8accel.sim.host import attach
from fp8accel.sim.run.runner import CONFIG_ENV

__all__ = []

PERIOD_NS = 10


def _job_config():
    path = os.environ.get(CONFIG_ENV)
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("job")


@cocotb.skipif(_job_config() is None, reason="no job in the configuration")
@cocotb.test()
async def run_job(dut):
    """Run the GEMMs, then the weight updates, of ``cfg["job"]``: operands from ``.npy``
    files (an update's gradient may be an earlier GEMM's result), results to ``.npy``,
    counters and timings to the report. An update's ``cycles`` are simulated clock cycles
    from its first register write to its last result."""
    job = _job_config()
    progress = job.get("progress")

    def note(text):
        if progress:
            with open(progress, "w") as f:
                f.write(text)

    host = await attach(dut, PERIOD_NS)
    config = await host.config()
    report = {"config": {k: (v.name.lower() if k == "acc_fmt" else v)
                         for k, v in config.items()}, "gemms": []}
    for i, g in enumerate(job.get("gemms", [])):
        name = g.get("name", f"GEMM {i + 1}")
        note(f"{name} ({i + 1} of {len(job['gemms'])})")
        A, B = np.load(g["a"]), np.load(g["b"])
        C = np.load(g["c"]) if g.get("c") else None
        t0 = time.perf_counter()
        c0 = get_sim_time("ns")
        out, cycles, active = await host.run_gemm(A, B, C, **g["opts"])
        sim_cycles = round((get_sim_time("ns") - c0) / PERIOD_NS)
        t1 = time.perf_counter()
        run = host.last_run
        m, n, k = run["m"], run["n"], run["k"]
        np.save(g["out"], out)
        macs = config["rows"] * config["cols"]
        report["gemms"].append({
            "name": name, "m": m, "n": n, "k": k, "cycles": cycles, "active": active,
            "utilization": m * n * k / (macs * cycles),
            "cycles_total": run["cycles_total"],
            "end_to_end_utilization": (None if run["cycles_total"] is None
                                       else m * n * k / (macs * run["cycles_total"])),
            "tile": run["tile"], "commands": run["commands"],
            "seconds": t1 - t0, "cycles_per_s": sim_cycles / (t1 - t0), "out": g["out"]})
    report["updates"] = []
    for i, u in enumerate(job.get("updates", [])):
        name = u.get("name", f"update {i + 1}")
        note(f"{name} ({i + 1} of {len(job['updates'])})")
        w, g, v = (np.load(u[key]) for key in ("w", "g", "v"))
        t0 = time.perf_counter()
        c0 = get_sim_time("ns")
        w1, v1 = await host.update(w, g, v, lr=u["lr"], momentum=u["momentum"],
                                   weight_decay=u["weight_decay"], seed=u["seed"],
                                   rounding=u["rounding"])
        cycles = round((get_sim_time("ns") - c0) / PERIOD_NS)
        t1 = time.perf_counter()
        np.save(u["out_w"], w1)
        np.save(u["out_v"], v1)
        report["updates"].append({
            "name": name, "elements": int(w.size), "cycles": cycles,
            "rng_state": await host.rng_state(), "update_s": t1 - t0,
            "out_w": u["out_w"], "out_v": u["out_v"]})
    with open(job["report"], "w") as f:
        json.dump(report, f, indent=1)

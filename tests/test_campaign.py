"""The randomized host (``sim/tb/campaign.py``) against the accelerator: valid work checked
bit for bit against sim.golden, interleaved with misuse, stalls and resets.

The seed is fixed (1) unless ``--seed N`` or ``FP8ACCEL_SEED=N`` says otherwise; a failure
prints the seed and the host calls that led to it. CI runs a few hundred operations on
Verilator (the default build, the reduced build and the UART bridge) and a short run on
Icarus; ``slow`` runs the long campaign (``FP8ACCEL_CAMPAIGN_OPS``, default 20,000).
"""

import json
import os

import pytest

from conftest import BUILD
from fp8accel.hw.bridge import BridgedAccelerator
from fp8accel.hw.top import Accelerator
from fp8accel.sim.run.runner import run_cocotb

#: Small buffers: the oversized commands of the campaign are then near the valid ones.
DEPTHS = [64, 256, 64]
#: The builds of tests/test_cocotb_top.py and tests/test_bridge.py, whose directories the
#: short campaigns share (runs in one directory take turns; the build is made once).
TOP_DEPTHS = [1024, 4096, 1024]
BRIDGE_DEPTHS = [256, 1024, 256]


def run_campaign(sim, seed, ops, *, rows=2, cols=3, update=True, fp8_out=True, ram="lutram",
                 link="axi", depths=DEPTHS, name=None, sabotage=False, queue=4, **extra):
    name = name or f"campaign-{sim}-{rows}x{cols}"
    build_dir = BUILD / name
    cfg = {"rows": rows, "cols": cols, "depths": depths, "acc_fmt": "dlfloat16", "seed": seed,
           "ops": ops, "max_dims": [12, 8, 40], "link": link, "update": update,
           "fp8_out": fp8_out, "report": str(build_dir / "campaign.json"),
           "sabotage": sabotage, **extra}
    kwargs = dict(a_depth=depths[0], b_depth=depths[1], acc_depth=depths[2], update=update,
                  fp8_out=fp8_out, ram=ram, queue=queue)
    if link == "uart":
        cfg.update(divisor=8, fifo_depth=64, timeout_cycles=4096)
        top = BridgedAccelerator(rows, cols, divisor=8, fifo_depth=64, timeout_cycles=4096,
                                 **kwargs)
        toplevel = "bridged"
    else:
        top = Accelerator(rows, cols, **kwargs)
        toplevel = "top"
    results = run_cocotb(top, toplevel=toplevel, test_module="fp8accel.sim.tb.campaign",
                         build_dir=build_dir, sim=sim, config=cfg)
    report = json.loads((build_dir / "campaign.json").read_text())
    print(f"{name}: seed {seed}, {report['ops']} operations ({report['host_calls']} host calls) "
          f"clean in {results.test_time:.1f} s; {report['counts']}")
    return report


@pytest.mark.verilator
def test_campaign_verilator(campaign_seed):
    report = run_campaign("verilator", campaign_seed, 300, depths=TOP_DEPTHS,
                          name="top-verilator-2x3")
    # Every kind of operation ran.
    assert len(report["counts"]) >= 17, report["counts"]


@pytest.mark.verilator
def test_campaign_reduced_build(campaign_seed):
    """No update unit, no FP8 converters, no command queue, delay lines in block RAM (the
    iCE40 build): the same campaign, UPDATE answered with error 8, FP8 reads converted on the
    host, and a command that cannot start at once refused with error 4."""
    run_campaign("verilator", campaign_seed, 200, rows=2, cols=2, update=False, fp8_out=False,
                 ram="bram", queue=0, name="campaign-verilator-2x2-reduced")


@pytest.mark.verilator
def test_campaign_uart_bridge(campaign_seed):
    """Through the UART bridge, with line noise: stray bytes and truncated packets."""
    run_campaign("verilator", campaign_seed, 40, rows=2, cols=2, link="uart",
                 depths=BRIDGE_DEPTHS, name="bridge-verilator-2x2")


@pytest.mark.icarus
def test_campaign_icarus(campaign_seed):
    run_campaign("icarus", campaign_seed, 40, depths=TOP_DEPTHS, name="top-icarus-2x3")


@pytest.mark.verilator
def test_campaign_can_fail():
    """A model that is wrong by one bit in every GEMM result must fail, and the failure must
    name the seed and list the host calls."""
    with pytest.raises(AssertionError, match=r"(?s)campaign seed 3 .*differ from sim.golden"
                                             r".*host calls so far \(replay with "
                                             r"FP8ACCEL_SEED=3\)"):
        run_campaign("verilator", 3, 40, sabotage=True, depths=TOP_DEPTHS,
                     name="top-verilator-2x3")


@pytest.mark.verilator
@pytest.mark.slow
def test_campaign_long(campaign_seed):
    ops = int(os.environ.get("FP8ACCEL_CAMPAIGN_OPS", 20_000))
    run_campaign("verilator", campaign_seed, ops, name="campaign-verilator-2x3-long")

"""Drive a fixed-latency unit in Amaranth's simulator, one operation per cycle."""

import numpy as np
from amaranth.sim import Simulator

__all__ = ["run_unit"]


def run_unit(unit, inputs, output, *, vcd=None):
    """Feed ``inputs`` (port name -> array, all of one length) through ``unit``, one operation
    per cycle, and return the values of port ``output`` in the same order.

    The result of operation ``i`` is read ``unit.latency`` cycles after it was applied, while
    later operations keep entering: this checks the pipeline at full throughput.
    """
    names = list(inputs)
    cols = [np.asarray(inputs[n]).astype(np.int64).ravel().tolist() for n in names]
    count = len(cols[0]) if cols else 0
    if any(len(c) != count for c in cols):
        raise ValueError("All input arrays must have one length")
    ports = [getattr(unit, n) for n in names]
    out_port = getattr(unit, output)
    lat = unit.latency
    results = [0] * count

    async def bench(ctx):
        for cycle in range(count + lat):
            if cycle < count:
                for port, col in zip(ports, cols):
                    ctx.set(port, col[cycle])
            await ctx.tick()
            done = cycle - lat + 1
            if 0 <= done < count:
                results[done] = ctx.get(out_port)

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return np.array(results, dtype=np.int64)

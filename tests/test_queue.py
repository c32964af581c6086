"""hw.queue: entries in order, tickets and the error log of the command queue, against a model
that computes ``completed`` as the smallest ticket in flight, under random pushes, starts, ends,
failures and log reads."""

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from fp8accel.hw.queue import CommandQueue

ENTRY = data.StructLayout({"start": 1, "tag": 12})


@pytest.mark.parametrize("bad", [-1, 16, True, 2.0])
def test_depth_is_checked(bad):
    with pytest.raises(ValueError, match="depth must be 0 to 15"):
        CommandQueue(ENTRY, bad)


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_queue_against_a_model(depth):
    rng = np.random.default_rng(depth)
    dut = CommandQueue(ENTRY, depth)
    cycles = 3000
    seen = {"pops": 0, "fails": 0, "out_of_order": 0, "full": 0}

    async def bench(ctx):
        entries = []                 # (ticket, start, tag) not started
        accepted = started = 0
        gemm = xfer = None           # ticket in flight
        log = []
        next_tag = lag = 0
        for _ in range(cycles):
            # The state before this clock edge.
            in_flight = [t for t in (gemm, xfer) if t is not None]
            completed = min(in_flight) if in_flight else started
            assert ctx.get(dut.accepted) == accepted % 65536
            assert ctx.get(dut.completed) == completed % 65536, (completed, gemm, xfer)
            assert ctx.get(dut.pending) == accepted - completed
            assert ctx.get(dut.gemm_busy) == (gemm is not None)
            assert ctx.get(dut.xfer_busy) == (xfer is not None)
            assert ctx.get(dut.log_level) == len(log)
            assert ctx.get(dut.log_valid) == bool(log)
            assert ctx.get(dut.log_ticket) == (log[0] if log else 0)
            log_room = len(log) < max(1, depth)
            assert ctx.get(dut.log_room) == log_room

            # This cycle's inputs.
            gemm_end = gemm is not None and rng.random() < 0.15
            xfer_end = xfer is not None and rng.random() < 0.2
            fail = xfer_end and rng.random() < 0.4
            log_pop = bool(log) and rng.random() < 0.1
            new = {"start": int(rng.random() < 0.5), "tag": next_tag}
            free = {1: gemm is None, 0: xfer is None and log_room}
            if depth:
                # The oldest entry not started is the head once it has passed the FIFO (two
                # cycles at most); the queue never holds more than ``depth``.
                valid = ctx.get(dut.head_valid)
                if valid:
                    assert entries and ctx.get(dut.head.tag) == entries[0][2]
                    lag = 0
                elif entries:
                    lag += 1
                    assert lag <= 2, "an entry did not reach the head"
                head = entries[0] if valid else None
                room = ctx.get(dut.room)
                push = room and rng.random() < 0.6
                pop = valid and free[head[1]] and rng.random() < 0.8
                seen["full"] += not room
            else:
                start_now = free[new["start"]]
                push = rng.random() < 0.6 and start_now
                head = (accepted, new["start"], new["tag"]) if push else None
                pop = push
                ctx.set(dut.start_now, start_now)
            ctx.set(dut.push, push)
            ctx.set(dut.entry, new)
            ctx.set(dut.pop, pop)
            ctx.set(dut.pop_gemm, head[1] if pop else 0)
            ctx.set(dut.gemm_end, gemm_end)
            ctx.set(dut.xfer_end, xfer_end)
            ctx.set(dut.fail, fail)
            ctx.set(dut.log_pop, log_pop)
            if depth == 0 and push:
                assert ctx.get(dut.room) and ctx.get(dut.head_valid)
                assert ctx.get(dut.head.tag) == new["tag"]
            await ctx.tick()

            # The model after the edge.
            if log_pop:
                log.pop(0)
            if fail:
                log.append(xfer % 65536)
                seen["fails"] += 1
            if gemm_end:
                if xfer is not None and xfer < gemm:
                    seen["out_of_order"] += 1
                gemm = None
            if xfer_end:
                xfer = None
            if push:
                accepted += 1
                next_tag = (next_tag + 1) % 4096
                if depth:
                    entries.append((accepted - 1, new["start"], new["tag"]))
                    assert len(entries) <= depth
            if pop:
                if depth:
                    entries.pop(0)
                if head[1]:
                    gemm = started
                else:
                    xfer = started
                started += 1
                seen["pops"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # The run covered what it is for.
    assert seen["pops"] > 300 and seen["fails"] > 20 and seen["out_of_order"], seen
    if depth:
        assert seen["full"] > 0, seen

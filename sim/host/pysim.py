"""The host driver on Amaranth's simulator: :class:`AmaranthTransport` drives
``hw.top.Accelerator``'s AXI4-Lite and AXI4-Stream ports from an async testbench, so that
:class:`~fp8accel.sim.host.AcceleratorHost` runs on the RTL without a Verilog simulator (small
builds; Verilator is much faster for long runs).

Typical use::

    from amaranth.sim import Simulator
    from fp8accel.hw.top import Accelerator
    from fp8accel.sim.host import AcceleratorHost
    from fp8accel.sim.host.pysim import AmaranthTransport

    dut = Accelerator(2, 2, a_depth=64, b_depth=256, acc_depth=64)

    async def bench(ctx):
        host = AcceleratorHost(AmaranthTransport(ctx, dut))
        await host.reset()
        C, cycles, active = await host.run_gemm(A, B)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
"""

from .driver import AcceleratorTimeout, Transport, bus_error

__all__ = ["AmaranthTransport"]


class AmaranthTransport(Transport):
    """:class:`Transport` for ``dut`` (an ``hw.top.Accelerator``) in Amaranth's simulator.

    Parameters
    ----------
    ctx : amaranth.sim testbench context
    dut : hw.top.Accelerator
    rst : Signal, optional
        The reset of the simulated design, when it is wrapped as
        ``ResetInserter({"sync": rst})(dut)``: :meth:`reset` then resets the device. Without
        it, :meth:`reset` only lets a few cycles pass (the simulation starts with the device
        reset).
    handshake_limit : int
        Cycles an AXI4-Lite access may wait for its handshake before it is reported as hung.
    """

    def __init__(self, ctx, dut, rst=None, handshake_limit=64):
        self._ctx = ctx
        self._dut = dut
        self._rst = rst
        self._limit = handshake_limit

    async def read_reg(self, addr):
        ctx, dut = self._ctx, self._dut
        ctx.set(dut.s_axil.araddr, addr)
        ctx.set(dut.s_axil.arvalid, 1)
        ctx.set(dut.s_axil.rready, 1)
        for _ in range(self._limit):
            _, _, ar, rvalid, rdata, rresp = await ctx.tick().sample(
                dut.s_axil.arready, dut.s_axil.rvalid, dut.s_axil.rdata, dut.s_axil.rresp)
            if ar:
                ctx.set(dut.s_axil.arvalid, 0)
            if rvalid:
                ctx.set(dut.s_axil.rready, 0)
                error = bus_error(rresp, f"Reading register 0x{addr:02x}")
                if error:
                    raise error
                return rdata
        raise AcceleratorTimeout(f"No read response for register 0x{addr:02x}")

    async def write_reg(self, addr, value):
        ctx, dut = self._ctx, self._dut
        ctx.set(dut.s_axil.awaddr, addr)
        ctx.set(dut.s_axil.wdata, int(value))
        ctx.set(dut.s_axil.wstrb, 0b1111)
        ctx.set(dut.s_axil.awvalid, 1)
        ctx.set(dut.s_axil.wvalid, 1)
        ctx.set(dut.s_axil.bready, 1)
        for _ in range(self._limit):
            _, _, aw, bvalid, bresp = await ctx.tick().sample(
                dut.s_axil.awready, dut.s_axil.bvalid, dut.s_axil.bresp)
            if aw:
                ctx.set(dut.s_axil.awvalid, 0)
                ctx.set(dut.s_axil.wvalid, 0)
            if bvalid:
                ctx.set(dut.s_axil.bready, 0)
                error = bus_error(bresp, f"Writing register 0x{addr:02x}")
                if error:
                    raise error
                return
        raise AcceleratorTimeout(f"No write response for register 0x{addr:02x}")

    async def _stream(self, data, receive, timeout_cycles, what):
        """Offer the frame ``data`` (``None``: none) while receiving one frame when
        ``receive``; returns the bytes received (those ``tkeep`` marks)."""
        ctx, dut = self._ctx, self._dut
        n = dut.stream_width // 8
        data = b"" if data is None else bytes(data)
        beats = [(int.from_bytes(data[i:i + n], "little"),
                  (1 << min(n, len(data) - i)) - 1) for i in range(0, len(data), n)]
        sent, got, done_rx = 0, bytearray(), not receive
        ctx.set(dut.m_axis.tready, int(receive))
        for _ in range(timeout_cycles):
            if sent < len(beats):
                ctx.set(dut.s_axis.tdata, beats[sent][0])
                ctx.set(dut.s_axis.tkeep, beats[sent][1])
                ctx.set(dut.s_axis.tlast, int(sent == len(beats) - 1))
                ctx.set(dut.s_axis.tvalid, 1)
            else:
                ctx.set(dut.s_axis.tvalid, 0)
            if sent == len(beats) and done_rx:
                break
            _, _, tready, tvalid, tdata, tkeep, tlast = await ctx.tick().sample(
                dut.s_axis.tready, dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tkeep,
                dut.m_axis.tlast)
            if sent < len(beats) and tready:
                sent += 1
            if not done_rx and tvalid:
                raw = int(tdata).to_bytes(n, "little")
                got += bytes(raw[i] for i in range(n) if tkeep >> i & 1)
                if tlast:
                    done_rx = True
                    ctx.set(dut.m_axis.tready, 0)
        else:
            ctx.set(dut.s_axis.tvalid, 0)
            ctx.set(dut.m_axis.tready, 0)
            raise AcceleratorTimeout(f"{what} did not finish within {timeout_cycles} cycles")
        ctx.set(dut.s_axis.tvalid, 0)
        ctx.set(dut.m_axis.tready, 0)
        return bytes(got)

    async def send(self, data, timeout_cycles):
        await self._stream(data, False, timeout_cycles, f"Sending a frame of {len(data)} bytes")

    async def recv(self, timeout_cycles):
        return await self._stream(None, True, timeout_cycles, "Receiving a frame")

    async def exchange(self, data, timeout_cycles):
        return await self._stream(data, True, timeout_cycles,
                                  f"Exchanging a frame of {len(data)} bytes")

    async def wait_cycles(self, cycles):
        await self._ctx.tick().repeat(cycles)

    async def reset(self, cycles=4):
        if self._rst is not None:
            self._ctx.set(self._rst, 1)
            await self._ctx.tick().repeat(cycles)
            self._ctx.set(self._rst, 0)
        await self._ctx.tick()

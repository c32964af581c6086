"""AXI4-Lite and AXI4-Stream as ``wiring`` signatures, the flat port names they take in
Verilog, and a register slice for a stream port.

Both signatures are written from the manager's (source's) side: a subordinate takes
``In(AXI4LiteSignature())``, a stream sink ``In(AXI4StreamSignature(16))``. Connected with
``wiring.connect``. In Verilog the members of ``s_axil`` become ``s_axil_awaddr``, ``s_axil_wdata``,
... (:func:`verilog_ports`), the names from which vendor tools and cocotbext-axi infer the
interfaces.
"""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .common import CheckedComponent

__all__ = ["AXI4LiteSignature", "AXI4StreamSignature", "StreamSlice", "verilog_ports"]


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite, from the manager's side: write address, write data, write response, read
    address and read data channels (no PROT)."""

    def __init__(self, addr_width=8, data_width=32):
        if data_width not in (32, 64):
            raise ValueError(f"AXI4-Lite data is 32 or 64 bits wide, not {data_width}")
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"


class AXI4StreamSignature(wiring.Signature):
    """AXI4-Stream, from the source's side: ``tdata``, ``tkeep`` (a bit per byte of
    ``tdata``), ``tvalid``, ``tready`` and ``tlast``."""

    def __init__(self, data_width):
        if (isinstance(data_width, bool) or not isinstance(data_width, int) or data_width < 8
                or data_width % 8):
            raise ValueError(f"AXI4-Stream data is a whole number of bytes wide, not "
                             f"{data_width!r} bits")
        self.data_width = data_width
        super().__init__({"tdata": Out(data_width), "tkeep": Out(data_width // 8),
                          "tvalid": Out(1), "tready": In(1), "tlast": Out(1)})

    def __eq__(self, other):
        return type(other) is type(self) and other.data_width == self.data_width

    def __repr__(self):
        return f"AXI4StreamSignature({self.data_width})"


def verilog_ports(component):
    """``{name: (signal, None)}`` for ``amaranth.back.verilog.convert(..., ports=...)``: the
    members of an AXI interface of ``component`` named with ``_`` (``s_axil_awaddr``) rather
    than Amaranth's ``s_axil__awaddr``; every other port as Amaranth names it (``i__valid``
    for a member of a stream ``i``)."""
    axi = {name for name, member in component.signature.members.items()
           if member.is_signature
           and isinstance(member.signature, (AXI4LiteSignature, AXI4StreamSignature))}
    ports = {}
    for path, _member, value in component.signature.flatten(component):
        sep = "_" if path[0] in axi else "__"
        ports[sep.join(str(part) for part in path)] = (Value.cast(value), None)
    return ports


class StreamSlice(CheckedComponent):
    """A register slice for AXI4-Stream: every signal it drives comes from a flip-flop.

    Two beats of storage (the output register and a skid register), so that a stream through
    it keeps a beat per cycle while ``s.tready`` is a register too: a beat enters while the
    skid register is empty, and the skid register fills only when the output is held. A beat
    takes one cycle through an idle slice. ``tdata``, ``tkeep`` and ``tlast`` are carried;
    those of an empty slice's output are the last beat's (only ``tvalid`` says a beat is
    there).

    Placed on a port, it keeps the handshake of the logic behind it off the wires to the
    other side: the source's ``tready`` and the sink's ``tvalid`` and data all leave from
    flip-flops, and what arrives goes into flip-flops after at most a multiplexer.

    Members
    -------
    s : In(AXI4StreamSignature(data_width))
    m : Out(AXI4StreamSignature(data_width))
    """

    def __init__(self, data_width):
        self._width = data_width
        super().__init__({"s": In(AXI4StreamSignature(data_width)),
                          "m": Out(AXI4StreamSignature(data_width))})

    def elaborate(self, platform):
        m = Module()
        s, o = self.s, self.m
        beat = [s.tdata, s.tkeep, s.tlast]
        out = [o.tdata, o.tkeep, o.tlast]
        skid = [Signal.like(v, name=f"skid_{v.name.split('__')[-1]}", reset_less=True)
                for v in beat]
        skid_valid = Signal()
        m.d.comb += s.tready.eq(~skid_valid)
        taken = s.tvalid & ~skid_valid
        # The skid register takes whatever arrives while it is empty, so that its enable is a
        # flip-flop (not the handshakes); ``skid_valid`` says when it holds a beat.
        with m.If(~skid_valid):
            m.d.sync += [k.eq(v) for k, v in zip(skid, beat)]
        with m.If(~o.tvalid | o.tready):
            # The output register is free: from the skid register if it holds a beat (and then
            # nothing enters), otherwise the beat arriving.
            m.d.sync += [o.tvalid.eq(skid_valid | s.tvalid), skid_valid.eq(0)]
            m.d.sync += [r.eq(Mux(skid_valid, k, v)) for r, k, v in zip(out, skid, beat)]
        with m.Elif(taken):
            m.d.sync += skid_valid.eq(1)
        return m

"""The accelerator's registers behind its AXI4-Lite port, from the one register description.

Ref: docs/host-interface.md ("Registers", "AXI4-Lite rules").
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib.wiring import In, Out

from . import regs
from .axi import AXI4LiteSignature
from .common import CheckedComponent
from .regs import Access, Reg

__all__ = ["RegisterBlock", "Resp"]


class Resp:
    """AXI4-Lite BRESP and RRESP."""
    OKAY = 0b00
    #: The register exists but refuses the access: a partial write (WSTRB != 0b1111), a value
    #: with bits outside the register's fields, a write of a read-only register, a read of CTRL.
    SLVERR = 0b10
    #: No register at this address.
    DECERR = 0b11


class RegisterBlock(CheckedComponent):
    """The registers of :data:`hw.regs.REGISTERS` on an AXI4-Lite slave port.

    Every writable register is stored here and is an output named after it in lower case
    (``m``, ``options``, ...), in its shape (OPTIONS as its fields). A write of CTRL starts a
    decision: ``ctrl`` holds its action bits and ``ctrl_single`` whether exactly one of them is
    set (and no other bit); ``decide`` is high ``decide_cycles`` cycles later, and only then is
    the write answered; ``judge`` is high in the cycle before ``decide``, so that whatever
    decides can register its outcome and act on it at ``decide`` from flip-flops alone. Until
    then no other write is taken, so whatever decides sees the registers the action will use,
    and a host that has its response reads the decision's outcome in STATUS.

    Every other readable register reads a constant (``constants``) or an input named after it
    in lower case (``status``, ``cycles``, ...). A read takes two cycles: its address is decoded
    in the cycle it is taken, and its value is the input's in the next, registered into
    ``rdata`` with ``rvalid``; no read is taken meanwhile. The registers of ``absent`` units (the
    ``unit`` of their description: ``"update"``, ``"stamps"``) read 0, and writes of them that
    fit are answered OKAY and dropped.

    Parameters
    ----------
    constants : dict
        ``{register name: int}``.
    absent : iterable of str
    decide_cycles : int
        3 or more.
    popped : iterable of str
        Registers whose read takes something away: each has an output ``<name>_read``, high in
        the cycle such a read's value is registered (ERRLOG), the cycle after it is taken.

    Members
    -------
    s_axil : In(AXI4LiteSignature(8, 32))
    deciding : Out(1)
        A CTRL write is being decided.
    judge : Out(1), decide : Out(1)
        Registered: the cycle before the decision, the cycle of the decision.
    ctrl : Out(CTRL.size), ctrl_single : Out(1)
    """

    def __init__(self, *, constants, absent=(), decide_cycles=4, popped=("ERRLOG",)):
        self._constants = dict(constants)
        self._absent = set(absent)
        if isinstance(decide_cycles, bool) or not isinstance(decide_cycles, int) \
                or decide_cycles < 3:
            raise ValueError(f"decide_cycles must be an integer of at least 3, "
                             f"not {decide_cycles!r}")
        self._decide = decide_cycles
        self._popped = tuple(popped)
        members = {"s_axil": In(AXI4LiteSignature(addr_width=8, data_width=32)),
                   "deciding": Out(1), "judge": Out(1), "decide": Out(1),
                   "ctrl": Out(regs.CTRL.size), "ctrl_single": Out(1)}
        for reg in regs.REGISTERS:
            name = reg.name.lower()
            if reg.access is Access.RW:
                members[name] = Out(reg.shape)
            elif reg.readable and reg.name not in self._constants:
                members[name] = In(reg.shape)
        for name in self._popped:
            members[f"{name.lower()}_read"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        axil = self.s_axil
        deciding = Signal(range(self._decide + 1))
        # ``judge`` and ``decide`` are registered (deciding == 2 and 1 in the cycle they are
        # high): they fan out to the whole decision.
        m.d.comb += self.deciding.eq(deciding != 0)
        m.d.sync += [self.judge.eq(deciding == 3), self.decide.eq(deciding == 2)]

        # Writes (docs/host-interface.md, "AXI4-Lite rules").
        aw_ok = axil.awvalid & axil.wvalid & ~axil.bvalid & (deciding == 0)
        m.d.comb += [axil.awready.eq(aw_ok), axil.wready.eq(aw_ok)]
        with m.If(axil.bvalid & axil.bready):
            m.d.sync += axil.bvalid.eq(0)
        with m.If(deciding != 0):
            m.d.sync += deciding.eq(deciding - 1)
        with m.If(self.decide):
            m.d.sync += [axil.bvalid.eq(1), axil.bresp.eq(Resp.OKAY)]
        read_only = [r.addr for r in regs.REGISTERS if r.access is Access.R]
        with m.If(aw_ok):
            m.d.sync += [axil.bvalid.eq(1), axil.bresp.eq(Resp.OKAY)]
            data = axil.wdata
            whole = axil.wstrb == 0b1111
            with m.Switch(axil.awaddr & 0xFC):
                for reg in regs.REGISTERS:
                    if reg.access is not Access.RW:
                        continue
                    with m.Case(reg.addr):
                        # A value with bits outside the register's fields is refused, never
                        # truncated; so is a write of part of a register, and a value an
                        # enum field does not have (OPTIONS[17:16] = 3).
                        fits = (data & ~reg.write_mask) == 0
                        for f in reg.fields:
                            for bad in f.invalid:
                                fits &= data[f.lsb:f.msb + 1] != bad
                        with m.If(~whole | ~fits):
                            m.d.sync += axil.bresp.eq(Resp.SLVERR)
                        # (No empty Else for the registers of an absent unit.)
                        if reg.unit not in self._absent:
                            with m.Else():
                                m.d.sync += getattr(self, reg.name.lower()).eq(
                                    data[:reg.size])
                with m.Case(Reg.CTRL):
                    with m.If(~whole):
                        m.d.sync += axil.bresp.eq(Resp.SLVERR)
                    with m.Else():
                        # The response comes with the decision.
                        bits = data[:regs.CTRL.size]
                        m.d.sync += [
                            axil.bvalid.eq(0), deciding.eq(self._decide), self.ctrl.eq(bits),
                            self.ctrl_single.eq((bits != 0) & ((bits & (bits - 1)) == 0)
                                                & (data[regs.CTRL.size:] == 0)),
                        ]
                with m.Case(*read_only):
                    m.d.sync += axil.bresp.eq(Resp.SLVERR)
                with m.Default():
                    m.d.sync += axil.bresp.eq(Resp.DECERR)

        # Reads, in two cycles: the address is decoded into a flag per register when the read
        # is taken, and the value is chosen by those flags (an and-or of values) in the next
        # cycle. ``reading`` is cleared by the reset through its data input, not through the
        # domain's reset: so its next value is a plain expression, which a Verilog simulator
        # evaluates from the first cycle, and never unknown after a reset.
        regs_all = regs.REGISTERS
        sel = Signal(len(regs_all))
        reading = Signal(reset_less=True)
        ar_ok = axil.arvalid & ~axil.rvalid & ~reading
        m.d.comb += axil.arready.eq(ar_ok)
        m.d.sync += reading.eq(ar_ok & ~ResetSignal())
        with m.If(axil.rvalid & axil.rready):
            m.d.sync += axil.rvalid.eq(0)
        with m.If(ar_ok):
            addr = axil.araddr & 0xFC
            m.d.sync += sel.eq(Cat(*(addr == reg.addr for reg in regs_all)))

        def value(reg):
            if not reg.readable or reg.unit in self._absent:
                return None
            if reg.name in self._constants:
                return Const(self._constants[reg.name], 32)
            return Value.cast(getattr(self, reg.name.lower()))

        values = [(sel[i], value(reg)) for i, reg in enumerate(regs_all)]
        refused = Cat(*(sel[i] for i, reg in enumerate(regs_all) if not reg.readable))
        with m.If(reading):
            m.d.sync += [
                axil.rvalid.eq(1),
                axil.rdata.eq(reduce(operator.or_, (Mux(f, v, 0) for f, v in values
                                                    if v is not None), 0)),
                axil.rresp.eq(Mux(sel == 0, Resp.DECERR,
                                  Mux(refused.any(), Resp.SLVERR, Resp.OKAY))),
            ]
        for name in self._popped:
            index = regs_all.index(regs.register(name))
            m.d.comb += getattr(self, f"{name.lower()}_read").eq(reading & sel[index])
        return m

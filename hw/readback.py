"""READ_C: the accumulator words in address order, every lane through the output conversion,
packed into stream beats.

Ref: docs/host-interface.md ("Stream framing", READ_C).
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo
from amaranth.lib.wiring import In, Out

from .axi import AXI4StreamSignature
from .common import CheckedComponent, delay
from .fp.convert import FPConvert
from .fp.format import E4M3, E5M2, format_by_name
from .gearbox import Packer, pow2_at_least
from .gemm.engine import C_READ_LATENCY
from .regs import OutFmt

__all__ = ["ReadBack", "READ_LATENCY"]

#: Cycles from ``raddr`` to its word on ``rdata``: the engine's accumulator read.
READ_LATENCY = C_READ_LATENCY


class ReadBack(CheckedComponent):
    """Reads ``words`` accumulator words from address 0 up, one per cycle while the sink takes
    them, and sends them on ``m_axis``: as they are (``fmt`` = ACC, a word of ``16 * P`` bits
    per ``P = pow2_at_least(cols)`` lanes) or each lane converted to E5M2 or E4M3 (``rne``,
    saturating; a word of ``8 * P`` bits), ``tlast`` on the beat of the last word.

    Parameters
    ----------
    acc_fmt : FloatFormat or str
    cols : int
        Lanes per accumulator word.
    depth : int
        Accumulator words (``words`` is at most this).
    stream_width : int
    fp8_out : bool
        Build the converters; without them ``fmt`` must be ACC.

    Members
    -------
    start : In(1)
        Begin a frame of ``words`` words (sampled with it; 0 sends nothing).
    words : In(range(depth + 1))
    fmt : In(2)
        The output format (an :class:`hw.regs.OutFmt`), held for the whole frame.
    active : In(1)
        The frame runs: reads are issued and ``m_axis`` is driven only while it is set.
    raddr : Out(range(depth))
        The word to read (registered); its data is expected on ``rdata`` :data:`READ_LATENCY`
        cycles later.
    rdata : In(16 * cols)
    m_axis : Out(AXI4StreamSignature(stream_width))
    """

    def __init__(self, acc_fmt, cols, depth, stream_width, *, fp8_out=True):
        self._acc_fmt = format_by_name(acc_fmt)
        self._cols, self._depth, self._width = cols, depth, stream_width
        self._fp8_out = bool(fp8_out)
        self._word = self._acc_fmt.width * pow2_at_least(cols)
        super().__init__({
            "start": In(1), "words": In(range(depth + 1)), "fmt": In(2), "active": In(1),
            "raddr": Out(range(depth)), "rdata": In(self._acc_fmt.width * cols),
            "m_axis": Out(AXI4StreamSignature(stream_width)),
        })

    def elaborate(self, platform):
        m = Module()
        cols, w, c_word, W = self._cols, self._acc_fmt.width, self._word, self._width
        if self._fp8_out:
            # One converter per lane for both FP8 formats, the format chosen per word.
            conv = [FPConvert(self._acc_fmt, (E5M2, E4M3), "rne", True) for _ in range(cols)]
            for c in range(cols):
                m.submodules[f"to_fp8_{c}"] = conv[c]
            lat = conv[0].latency
        else:
            lat = 0
        # Room for every read in flight (five cycles to the converters, then their latency)
        # and a few more, so that reads are issued every cycle while the sink takes them.
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(width=c_word + 1,
                                                                  depth=lat + 10)
        inflight = Signal(range(lat + 14))
        to_issue = Signal(range(self._depth + 1))  # read addresses still to issue
        raddr = Signal(range(self._depth + 1))
        issue_last = Signal()  # to_issue == 1
        issuing = Signal()     # to_issue != 0
        # Registered, so a cycle late: it keeps room for the read it may issue in the cycle it
        # is computed and the one after.
        room = Signal()
        m.d.sync += room.eq(out_fifo.level + inflight + 3 < out_fifo.depth)
        issue = self.active & issuing & room
        m.d.sync += self.raddr.eq(raddr)
        with m.If(issue):
            m.d.sync += [to_issue.eq(to_issue - 1), issue_last.eq(to_issue == 2),
                         raddr.eq(raddr + 1)]
            with m.If(issue_last):
                m.d.sync += issuing.eq(0)
        with m.If(self.start):
            m.d.sync += [to_issue.eq(self.words), issue_last.eq(self.words == 1),
                         issuing.eq(self.words != 0), raddr.eq(0)]

        # The read data is registered before the converters (block RAM outputs are slow):
        # the address register, the read, the data register.
        rd_valid = delay(m, issue, READ_LATENCY + 2, "rd_valid", reset_less=False)
        rd_last = delay(m, issue_last, READ_LATENCY + 2, "rd_last", reset_less=False)
        c_q = Signal.like(self.rdata)
        m.d.sync += c_q.eq(self.rdata)
        raw = delay(m, c_q, lat, "raw")
        valid_d = delay(m, rd_valid, lat, "rd_valid_c", reset_less=False)
        last_d = delay(m, rd_last, lat, "rd_last_c", reset_less=False)
        if self._fp8_out:
            lanes = [c_q[w * c:w * c + w] for c in range(cols)]
            e4m3 = Signal()
            m.d.sync += e4m3.eq(self.fmt == OutFmt.E4M3)   # held for the whole frame
            for c in range(cols):
                m.d.comb += [conv[c].a.eq(lanes[c]), conv[c].sel.eq(e4m3)]
            value = Mux(self.fmt == OutFmt.ACC, raw, Cat(*(cv.r for cv in conv)))
        else:
            value = raw
        m.d.comb += [out_fifo.w_data.eq(Cat(value, Signal(c_word - len(raw)), last_d)),
                     out_fifo.w_en.eq(valid_d)]
        m.d.sync += inflight.eq(inflight + issue - valid_d)

        # 16-bit codes leave in words of c_word bits, FP8 codes in words of half that. The
        # stream comes from one of the packers, selected by and-or (every signal assigned
        # whole: see hw.framer).
        packers = {OutFmt.ACC: Packer(c_word, W)}
        if self._fp8_out:
            packers[OutFmt.E5M2] = Packer(c_word // 2, W)
        sources, r_ens = [], []
        for fmt, pk in packers.items():
            m.submodules[f"pack_{fmt.name.lower()}"] = pk
            mine = Signal(name=f"read_{fmt.name.lower()}")
            m.d.comb += mine.eq(self.active & ((self.fmt == OutFmt.ACC) if fmt == OutFmt.ACC
                                               else (self.fmt != OutFmt.ACC)))
            m.d.comb += [pk.i.payload.data.eq(out_fifo.r_data[:pk.word_width]),
                         pk.i.payload.last.eq(out_fifo.r_data[c_word]),
                         pk.i.valid.eq(out_fifo.r_rdy & mine),
                         pk.m_axis.tready.eq(mine & self.m_axis.tready)]
            r_ens.append(mine & pk.i.ready)
            sources.append((mine, pk.m_axis))
        m.d.comb += out_fifo.r_en.eq(Cat(*r_ens).any())
        for name in ("tdata", "tkeep", "tvalid", "tlast"):
            m.d.comb += getattr(self.m_axis, name).eq(
                reduce(operator.or_, (Mux(sel, getattr(axis, name), 0) for sel, axis in sources)))
        return m

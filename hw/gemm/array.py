"""Weight-stationary systolic array with chunk-based accumulation.

Ref: NUMERICS.md section 4 (chunk-based dot product); docs/architecture.md ("GEMM array").

Each column adds the products of one output column in increasing ``k`` through a chain of
pipelined adders, one per processing element (PE). Two 16-bit values flow down a column beside
each other: the sum of the current chunk and the running total. A PE at a chunk boundary adds
the finished chunk into the total and restarts the chunk with its own product; every other PE
adds its product into the chunk and passes the total on. So every PE needs one adder, and the
section-4 order (products in increasing ``k``, chunks added into the total in order) holds
whatever the array height, the chunk length and the splitting of ``K`` into passes: a pass
starts from the chunk and total that the previous pass left at the bottom.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from ..fp.adder import FPAdder
from ..fp.common import delay, delay_ram, lzc
from ..fp.format import DLFLOAT16, FloatFormat, Specials, format_by_name
from ..fp.multiplier import FPMultiplier
from ..fp.unit import CheckedComponent

__all__ = ["E5M3", "widen_fp8", "ProcessingElement", "SystolicArray"]

#: The array's internal operand format: E5M2 and E4M3 codes both convert to it exactly, so one
#: multiplier serves both operand formats, chosen per command.
E5M3 = FloatFormat(5, 3, 15, True, Specials.IEEE, "E5M3")


def widen_fp8(code, is_e4m3):
    """Convert an E5M2 code (``is_e4m3 == 0``) or an E4M3 code (``is_e4m3 == 1``) to E5M3,
    exactly. E4M3 subnormals become E5M3 normals; E4M3's NaN becomes E5M3's NaN."""
    sign, E, M = code[7], code[3:7], code[:3]
    from_e5m2 = Cat(Const(0, 1), code[:7])
    lz = lzc(M)
    sub_frac = (M << (lz + 1))[:3]
    e4_normal = Cat(M, E + 8)
    e4_sub = Cat(sub_frac, (8 - lz)[:5])
    e4 = Mux(E == 0, Mux(M == 0, Const(0, 8), e4_sub), e4_normal)
    e4 = Mux((E == 15) & (M == 7), E5M3.nan_code, e4)
    return Mux(is_e4m3, Cat(e4, sign), Cat(from_e5m2[:8], sign))


class ProcessingElement(CheckedComponent):
    """One multiply and one add of a column.

    The activation and its flags enter from the left and leave to the right one cycle later;
    the chunk and total enter from above and leave ``v_latency`` cycles later. An activation
    must enter ``m_latency`` cycles before the chunk and total it meets.

    Members
    -------
    a, kvalid, boundary, bank : In
        Activation (E5M3), whether it belongs to a real ``k`` (else the product is +0), whether
        a chunk starts at this ``k``, and which weight bank it multiplies with.
    a_out, kvalid_out, boundary_out, bank_out : Out
        The same, registered, for the PE to the right.
    chunk_in, total_in, rna_in : In
    chunk_out, total_out, rna_out : Out
    w_data, w_we, w_bank : In
        Writes ``w_data`` (E5M3) into weight bank ``w_bank``.
    """

    def __init__(self, acc_fmt=DLFLOAT16):
        self._acc_fmt = format_by_name(acc_fmt)
        w = self._acc_fmt.width
        super().__init__({
            "a": In(9), "kvalid": In(1), "boundary": In(1), "bank": In(1),
            "a_out": Out(9), "kvalid_out": Out(1), "boundary_out": Out(1), "bank_out": Out(1),
            "chunk_in": In(w), "total_in": In(w), "rna_in": In(1),
            "chunk_out": Out(w), "total_out": Out(w), "rna_out": Out(1),
            "w_data": In(9), "w_we": In(1), "w_bank": In(1),
        })
        self._mul = FPMultiplier(E5M3, E5M3, self._acc_fmt)
        self._add = FPAdder(self._acc_fmt, "rne", runtime_rna=True)

    @property
    def m_latency(self):
        """Cycles from the activation entering to its product."""
        return self._mul.latency

    @property
    def v_latency(self):
        """Cycles from ``chunk_in``/``total_in`` to ``chunk_out``/``total_out``: the operand
        register, the adder and the output register."""
        return self._add.latency + 2

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = self._mul
        m.submodules.add = add = self._add
        fmt = self._acc_fmt

        weights = [Signal(9, name=f"w{i}") for i in range(2)]
        for i, w in enumerate(weights):
            with m.If(self.w_we & (self.w_bank == i)):
                m.d.sync += w.eq(self.w_data)
        m.d.sync += [
            self.a_out.eq(self.a), self.kvalid_out.eq(self.kvalid),
            self.boundary_out.eq(self.boundary), self.bank_out.eq(self.bank),
        ]
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(Mux(self.bank, weights[1], weights[0]))]


        kvalid = delay(m, self.kvalid, mul.latency, "kvalid")
        boundary = delay(m, self.boundary, mul.latency, "boundary")
        product = Mux(kvalid, mul.p, 0)
        # A restarted chunk is add(+0, p): the product itself, except that -0 becomes +0.
        restart = Mux(product == fmt.sign_mask, 0, product)
        # The operands are selected, then registered: in a large array the PEs are packed
        # tightly and routing is slow, and the selection in front of the adder's first stage
        # was the longest path of the 8x8 array.
        add_a = Signal(fmt.width, name="add_a")
        add_b = Signal(fmt.width, name="add_b")
        add_rna = Signal(name="add_rna")
        m.d.sync += [
            add_a.eq(Mux(boundary, self.total_in, self.chunk_in)),
            add_b.eq(Mux(boundary, self.chunk_in, product)),
            add_rna.eq(self.rna_in),
        ]
        m.d.comb += [add.a.eq(add_a), add.b.eq(add_b), add.rna.eq(add_rna)]
        # What the adder's result is combined with, delayed alongside it in LUT RAM.
        side = delay_ram(m, Cat(boundary, restart, self.total_in, self.rna_in),
                         add.latency + 1, "side")
        w = fmt.width
        boundary_d, restart_d = side[0], side[1:1 + w]
        total_d, rna_d = side[1 + w:1 + 2 * w], side[1 + 2 * w]
        m.d.sync += [
            self.chunk_out.eq(Mux(boundary_d, restart_d, add.s)),
            self.total_out.eq(Mux(boundary_d, add.s, total_d)),
            self.rna_out.eq(rna_d),
        ]
        return m


class SystolicArray(CheckedComponent):
    """``rows x cols`` weight-stationary array; one row of ``A`` enters per cycle.

    Inputs are given unskewed: for one output row ``i``, ``a`` holds ``A[i, k0 + r]`` for every
    array row ``r`` and ``chunk_in``/``total_in`` the running chunk and total of every column,
    all in the same cycle; the array skews them internally. ``latency`` cycles later the
    outputs hold row ``i``'s new chunk and total for every column (or, with ``last``, the
    final total ``add(total, chunk)`` in ``total_out``).

    Parameters
    ----------
    rows, cols : int
    acc_fmt : FloatFormat
        A 16-bit accumulator format.

    Members
    -------
    valid : In(1)
        The inputs of this cycle are a row of a pass.
    a : In(rows * 8)
        FP8 activations, row ``r`` in bits ``8r .. 8r+7``.
    kvalid, boundary : In(rows)
        Per array row: the row's ``k`` exists (else its product is +0); a chunk starts at it.
    a_e4m3 : In(1)
        The activations are E4M3 (else E5M2).
    bank : In(1)
        The weight bank this pass multiplies with.
    chunk_in, total_in : In(cols * 16)
    rna : In(1)
        Round accumulation ties away from zero (else to even).
    last : In(1)
        The last pass: the outputs are final.
    w_data : In(cols * 8), w_row : In(range(rows)), w_we : In(1), w_bank : In(1),
    w_e4m3 : In(1)
        Write one row of FP8 weights into bank ``w_bank``; the PEs hold it from the second
        clock edge after the write.
    out_valid, out_last : Out(1)
    chunk_out, total_out : Out(cols * 16)
    """

    def __init__(self, rows, cols, acc_fmt=DLFLOAT16):
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._rows, self._cols = rows, cols
        self._acc_fmt = format_by_name(acc_fmt)
        if self._acc_fmt.width != 16:
            raise ValueError(f"The accumulator format must be a 16-bit format, not "
                             f"{self._acc_fmt}")
        w = self._acc_fmt.width
        super().__init__({
            "valid": In(1), "a": In(rows * 8), "kvalid": In(rows), "boundary": In(rows),
            "a_e4m3": In(1), "bank": In(1),
            "chunk_in": In(cols * w), "total_in": In(cols * w), "rna": In(1), "last": In(1),
            "w_data": In(cols * 8), "w_row": In(range(max(rows, 2))), "w_we": In(1),
            "w_bank": In(1), "w_e4m3": In(1),
            "out_valid": Out(1), "out_last": Out(1),
            "chunk_out": Out(cols * w), "total_out": Out(cols * w),
        })
        # Latencies of the parts, from throwaway instances that are never elaborated.
        probe = ProcessingElement(self._acc_fmt)
        final = FPAdder(self._acc_fmt, "rne", runtime_rna=True)
        for unit in (probe, probe._mul, probe._add, final):
            unit._MustUse__silence = True
        self._m_lat, self._v_lat = probe.m_latency, probe.v_latency
        self._final_lat = final.latency

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)

    @property
    def latency(self):
        """Cycles from a row entering to its results leaving."""
        return self._m_lat + self._cols + self._rows * self._v_lat + self._final_lat + 1

    def elaborate(self, platform):
        m = Module()
        rows, cols, fmt = self._rows, self._cols, self._acc_fmt
        w = fmt.width


        pes = [[ProcessingElement(fmt) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Weights: widened to E5M3 and registered with the row's write enable decoded, then
        # written into one row of PEs. The register keeps the conversion out of the paths that
        # fan out to a whole column of PEs.
        w_bank = Signal(name="w_bank_q")
        w_row_we = Signal(rows, name="w_row_we")
        m.d.sync += [w_bank.eq(self.w_bank),
                     w_row_we.eq(Cat(*(self.w_we & (self.w_row == r) for r in range(rows))))]
        for c in range(cols):
            wide = Signal(9, name=f"w_wide{c}")
            m.d.sync += wide.eq(widen_fp8(self.w_data[8 * c:8 * c + 8], self.w_e4m3))
            for r in range(rows):
                pe = pes[r][c]
                m.d.comb += [pe.w_data.eq(wide), pe.w_bank.eq(w_bank),
                             pe.w_we.eq(w_row_we[r])]

        # Activations: widened, registered, then row r delayed by r PE latencies; they move
        # right by one column per cycle inside the PEs.
        for r in range(rows):
            wide = widen_fp8(self.a[8 * r:8 * r + 8], self.a_e4m3)
            act = Cat(wide, self.kvalid[r], self.boundary[r], self.bank)
            # One register after the conversion, then the skew.
            act = delay_ram(m, delay(m, act, 1, f"conv_a{r}"), r * self._v_lat, f"skew_a{r}")
            first = pes[r][0]
            m.d.comb += [first.a.eq(act[:9]), first.kvalid.eq(act[9]),
                         first.boundary.eq(act[10]), first.bank.eq(act[11])]
            for c in range(1, cols):
                left, pe = pes[r][c - 1], pes[r][c]
                m.d.comb += [pe.a.eq(left.a_out), pe.kvalid.eq(left.kvalid_out),
                             pe.boundary.eq(left.boundary_out), pe.bank.eq(left.bank_out)]

        # Column feeds: column c meets its activations c cycles after column 0, and every
        # activation enters m_latency cycles before the sums it meets (plus the register after
        # the activations' conversion).
        outs = []
        for c in range(cols):
            n = 1 + self._m_lat + c
            top = Cat(delay_ram(m, Cat(self.chunk_in[w * c:w * c + w],
                                       self.total_in[w * c:w * c + w], self.rna),
                                n, f"skew_top{c}"),
                      delay(m, Cat(self.last, self.valid), n, f"skew_flags{c}",
                            reset_less=False))
            pe0 = pes[0][c]
            m.d.comb += [pe0.chunk_in.eq(top[:w]), pe0.total_in.eq(top[w:2 * w]),
                         pe0.rna_in.eq(top[2 * w])]
            for r in range(1, rows):
                up, pe = pes[r - 1][c], pes[r][c]
                m.d.comb += [pe.chunk_in.eq(up.chunk_out), pe.total_in.eq(up.total_out),
                             pe.rna_in.eq(up.rna_out)]
            bottom = pes[rows - 1][c]
            flags = delay(m, top[2 * w + 1:], rows * self._v_lat, f"flags{c}",   # last, valid
                          reset_less=False)
            # The final add of section 4: total = add(total, chunk), on the last pass.
            m.submodules[f"final_{c}"] = final = FPAdder(fmt, "rne", runtime_rna=True)
            m.d.comb += [final.a.eq(bottom.total_out), final.b.eq(bottom.chunk_out),
                         final.rna.eq(bottom.rna_out)]
            chunk = delay(m, bottom.chunk_out, final.latency, f"chunk{c}")
            total = delay(m, bottom.total_out, final.latency, f"total{c}")
            flags = delay(m, flags, final.latency, f"flags_f{c}", reset_less=False)
            res = Signal(2 * w + 2, name=f"res{c}")
            m.d.sync += res.eq(Cat(chunk, Mux(flags[0], final.s, total), flags))
            outs.append(delay(m, res, cols - 1 - c, f"deskew{c}", reset_less=False))
        m.d.comb += [
            self.chunk_out.eq(Cat(*(o[:w] for o in outs))),
            self.total_out.eq(Cat(*(o[w:2 * w] for o in outs))),
            self.out_last.eq(outs[0][2 * w]),
            self.out_valid.eq(outs[0][2 * w + 1]),
        ]
        return m

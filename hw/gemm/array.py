"""Weight-stationary systolic array with chunk-based accumulation.

Ref: docs/numerics.md section 4 (chunk-based dot product); docs/architecture.md ("GEMM array and
engine").

Each column adds the products of one output column in increasing ``k`` through a chain of
pipelined adders, one per processing element (PE). Two 16-bit values flow down a column beside
each other: the sum of the current chunk and the running total. A PE at a chunk boundary adds
the finished chunk into the total and restarts the chunk with its own product; every other PE
adds its product into the chunk and passes the total on. So every PE needs one adder, and the
order of docs/numerics.md section 4 (products in increasing ``k``, chunks added into the total in
order) holds whatever the array height, the chunk length and the splitting of ``K`` into passes:
a pass starts from the chunk and total that the previous pass left at the bottom.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from ..fp.adder import FPAdder
from ..common import RAM_KINDS, delay, delay_ram, fanout_depth, fanout_tree
from ..fp.common import lzc
from ..fp.format import DLFLOAT16, FloatFormat, Specials, format_by_name
from ..fp.multiplier import FPMultiplier, check_product
from ..common import CheckedComponent

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

    Parameters
    ----------
    acc_fmt : FloatFormat
        The accumulator format: products are rounded to it and added in it.
    in_fmt : FloatFormat, optional
        The operand format. ``None`` (the accelerator): E5M3, to which the array widens E5M2 and
        E4M3 codes. Anything else, such as BINARY16, builds the PEs of the area comparison in
        docs/fpga.md.
    chunked : bool
        Chunk-based accumulation (a chunk and a total flow down the column). ``False`` builds
        the plain running sum of a conventional array for comparison: ``chunk_in``/``chunk_out``
        carry it, ``boundary`` and ``total_in`` are ignored and ``total_out`` is 0.
    ram : str
        Where the delay lines go: ``"lutram"`` (ECP5) or ``"bram"`` (iCE40, which has no LUT
        RAM); see :func:`hw.fp.common.delay_ram`.
    product : str
        ``"logic"`` or ``"dsp"``: how the multiplier builds its significand product (see
        :class:`hw.fp.multiplier.FPMultiplier`); ``"dsp"`` lets a conventional PE of the area
        comparison use a DSP block.

    Members
    -------
    a, kvalid, boundary, bank : In
        Activation (``in_fmt``), whether it belongs to a real ``k`` (else the product is +0),
        whether a chunk starts at this ``k``, and which weight bank it multiplies with.
    a_out, kvalid_out, boundary_out, bank_out : Out
        The same, registered, for the PE to the right.
    chunk_in, total_in, rna_in : In
    chunk_out, total_out, rna_out : Out
    w_data, w_we, w_bank : In
        Writes ``w_data`` (``in_fmt``) into weight bank ``w_bank``.
    """

    def __init__(self, acc_fmt=DLFLOAT16, in_fmt=None, *, chunked=True, ram="lutram",
                 product="logic"):
        if ram not in RAM_KINDS:
            raise ValueError(f"ram must be one of {', '.join(RAM_KINDS)}, not {ram!r}")
        self._ram = ram
        self._product = check_product(product)
        self._acc_fmt = format_by_name(acc_fmt)
        self._in_fmt = E5M3 if in_fmt is None else format_by_name(in_fmt)
        self._chunked = bool(chunked)
        w, n = self._acc_fmt.width, self._in_fmt.width
        super().__init__({
            "a": In(n), "kvalid": In(1), "boundary": In(1), "bank": In(1),
            "a_out": Out(n), "kvalid_out": Out(1), "boundary_out": Out(1), "bank_out": Out(1),
            "chunk_in": In(w), "total_in": In(w), "rna_in": In(1),
            "chunk_out": Out(w), "total_out": Out(w), "rna_out": Out(1),
            "w_data": In(n), "w_we": In(1), "w_bank": In(1),
        })
        self._mul = FPMultiplier(self._in_fmt, self._in_fmt, self._acc_fmt, product=product)
        self._add = FPAdder(self._acc_fmt, "rne", runtime_rna=True)

    in_fmt = property(lambda self: self._in_fmt)
    acc_fmt = property(lambda self: self._acc_fmt)
    chunked = property(lambda self: self._chunked)
    product = property(lambda self: self._product)

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
        n = self._in_fmt.width

        # Data registers have no reset (only what says that data is valid has one): the reset
        # then reaches far fewer flip-flops, and its fan-out stays short.
        weights = [Signal(n, name=f"w{i}", reset_less=True) for i in range(2)]
        for i, w in enumerate(weights):
            with m.If(self.w_we & (self.w_bank == i)):
                m.d.sync += w.eq(self.w_data)
        a_q = Signal(n, name="a_q", reset_less=True)
        m.d.sync += [
            a_q.eq(self.a), self.kvalid_out.eq(self.kvalid),
            self.boundary_out.eq(self.boundary), self.bank_out.eq(self.bank),
        ]
        m.d.comb += self.a_out.eq(a_q)
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(Mux(self.bank, weights[1], weights[0]))]

        kvalid = delay(m, self.kvalid, mul.latency, "kvalid")
        # A row beyond K adds -0, which leaves every sum as it is (+0 included): a partial
        # pass ends with the chunk it was given, so that a K tile may end inside a chunk.
        product = Mux(kvalid, mul.p, fmt.sign_mask)
        # The operands are selected, then registered: in a large array the PEs are packed
        # tightly and routing is slow, and the selection in front of the adder's first stage
        # was the longest path of the 8x8 array.
        add_a = Signal(fmt.width, name="add_a", reset_less=True)
        add_b = Signal(fmt.width, name="add_b", reset_less=True)
        chunk_q = Signal(fmt.width, name="chunk_q", reset_less=True)
        total_q = Signal(fmt.width, name="total_q", reset_less=True)
        m.d.comb += [self.chunk_out.eq(chunk_q), self.total_out.eq(total_q)]
        add_rna = Signal(name="add_rna")
        m.d.comb += [add.a.eq(add_a), add.b.eq(add_b), add.rna.eq(add_rna)]
        m.d.sync += add_rna.eq(self.rna_in)
        if not self._chunked:
            m.d.sync += [add_a.eq(self.chunk_in), add_b.eq(product)]
            rna_d = delay(m, self.rna_in, add.latency + 1, "rna")
            m.d.sync += [chunk_q.eq(add.s), self.rna_out.eq(rna_d)]
            return m

        boundary = delay(m, self.boundary, mul.latency, "boundary")
        # A restarted chunk is add(+0, p): the product itself, except that -0 becomes +0.
        restart = Mux(product == fmt.sign_mask, 0, product)
        m.d.sync += [
            add_a.eq(Mux(boundary, self.total_in, self.chunk_in)),
            add_b.eq(Mux(boundary, self.chunk_in, product)),
        ]
        # What the adder's result is combined with, delayed alongside it in LUT RAM.
        side = delay_ram(m, Cat(boundary, restart, self.total_in, self.rna_in),
                         add.latency + 1, "side", self._ram)
        w = fmt.width
        boundary_d, restart_d = side[0], side[1:1 + w]
        total_d, rna_d = side[1 + w:1 + 2 * w], side[1 + 2 * w]
        m.d.sync += [
            chunk_q.eq(Mux(boundary_d, restart_d, add.s)),
            total_q.eq(Mux(boundary_d, add.s, total_d)),
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
        The accumulator format (16 bits in the accelerator).
    in_fmt : FloatFormat, optional
        ``None`` (the accelerator): FP8 operands, E5M2 or E4M3 per pass (``a_e4m3``,
        ``w_e4m3``). Anything else: operands are codes of ``in_fmt`` and ``a_e4m3``/``w_e4m3``
        are ignored. With ``chunked``, these build the arrays of the area comparison.
    chunked : bool
        ``False``: a conventional array, one running sum per column in ``chunk_in``, added in
        order of ``k`` from the ``chunk_in`` of the first pass; ``boundary`` and ``total_in``
        are ignored, and on the last pass ``total_out`` holds the sum.
    ram, product : str
        As for :class:`ProcessingElement`.

    Members
    -------
    valid : In(1)
        The inputs of this cycle are a row of a pass.
    a : In(rows * n)
        Activations, ``n`` bits each (8, or ``in_fmt.width``), row ``r`` in bits
        ``n*r .. n*r+n-1``.
    kvalid, boundary : In(rows)
        Per array row: the row's ``k`` exists (else its product is +0); a chunk starts at it.
    a_e4m3 : In(1)
        The activations are E4M3 (else E5M2). Like ``w_e4m3`` and ``rna``, a setting of the
        command: it takes effect :attr:`settle_latency` cycles after it changes (it reaches
        every row and column through a tree of registers), so it must be held from that long
        before the first row (or weight) of a command until its last result has left.
    bank : In(1)
        The weight bank this pass multiplies with.
    chunk_in, total_in : In(cols * w)
        ``w = acc_fmt.width``.
    rna : In(1)
        Round accumulation ties away from zero (else to even).
    last : In(1)
        The last pass: the outputs are final.
    w_data : In(cols * n), w_row : In(range(rows)), w_we : In(1), w_bank : In(1),
    w_e4m3 : In(1)
        Write one row of weights into bank ``w_bank``; PE ``(r, c)`` holds its weight from the
        ``r + c + 1 + d``-th clock edge after the write, ``d`` the depth of the register tree
        that takes the write to every column (1 up to 4 columns, 2 up to 16;
        :attr:`weight_latency` for the last).
    out_valid, out_last : Out(1)
    chunk_out, total_out : Out(cols * w)
    """

    def __init__(self, rows, cols, acc_fmt=DLFLOAT16, in_fmt=None, *, chunked=True,
                 ram="lutram", product="logic"):
        if ram not in RAM_KINDS:
            raise ValueError(f"ram must be one of {', '.join(RAM_KINDS)}, not {ram!r}")
        self._ram = ram
        self._product = check_product(product)
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._rows, self._cols = rows, cols
        self._acc_fmt = format_by_name(acc_fmt)
        self._in_fmt = None if in_fmt is None else format_by_name(in_fmt)
        self._chunked = bool(chunked)
        w = self._acc_fmt.width
        n = 8 if self._in_fmt is None else self._in_fmt.width
        self._n = n
        super().__init__({
            "valid": In(1), "a": In(rows * n), "kvalid": In(rows), "boundary": In(rows),
            "a_e4m3": In(1), "bank": In(1),
            "chunk_in": In(cols * w), "total_in": In(cols * w), "rna": In(1), "last": In(1),
            "w_data": In(cols * n), "w_row": In(range(max(rows, 2))), "w_we": In(1),
            "w_bank": In(1), "w_e4m3": In(1),
            "out_valid": Out(1), "out_last": Out(1),
            "chunk_out": Out(cols * w), "total_out": Out(cols * w),
        })
        # The PEs and the final adders are made here, so that their latencies (which follow
        # from the formats) give the array's before elaboration.
        self._pes = [[self._pe() for _ in range(cols)] for _ in range(rows)]
        # A conventional array ends without the final add.
        self._finals = ([FPAdder(self._acc_fmt, "rne", runtime_rna=True) for _ in range(cols)]
                        if self._chunked else [])
        self._m_lat, self._v_lat = self._pes[0][0].m_latency, self._pes[0][0].v_latency
        # The final adder's operands are registered beside it first: the bottom PEs' outputs
        # are far from it.
        self._final_lat = self._finals[0].latency + 1 if self._chunked else 0

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    acc_fmt = property(lambda self: self._acc_fmt)
    in_fmt = property(lambda self: self._in_fmt)
    chunked = property(lambda self: self._chunked)
    product = property(lambda self: self._product)
    #: A PE's latencies (:attr:`ProcessingElement.m_latency`, ``v_latency``).
    m_latency = property(lambda self: self._m_lat)
    v_latency = property(lambda self: self._v_lat)

    def _pe(self):
        return ProcessingElement(self._acc_fmt, self._in_fmt, chunked=self._chunked,
                                 ram=self._ram, product=self._product)

    def _widen(self, code, is_e4m3):
        """An operand as the PEs take it: FP8 codes widen to E5M3, others pass unchanged."""
        return code if self._in_fmt is not None else widen_fp8(code, is_e4m3)

    @property
    def settle_latency(self):
        """Cycles from a change of the command's settings (``a_e4m3``, ``w_e4m3``, ``rna``)
        to their use: one register at the array's edge, then a register tree to every row
        and column (:func:`hw.common.fanout_tree`)."""
        return 1 + fanout_depth(max(self._rows, self._cols))

    @property
    def _w_tree(self):
        """Registers between a weight row's write and the top of column 0."""
        return fanout_depth(self._cols)

    @property
    def weight_latency(self):
        """Clock edges from a weight row's write until the last PE holds its weight."""
        return self._rows + self._cols + self._w_tree - 1

    @property
    def edge_latency(self):
        """Registers at the array's edge between an activation and its skew: the bank select,
        the same for every row, reaches the rows through a register tree
        (:func:`hw.common.fanout_tree`), and the other bits wait for it."""
        return fanout_depth(self._rows)

    @property
    def latency(self):
        """Cycles from a row entering to its results leaving."""
        return (self._m_lat + self._cols + self._rows * self._v_lat + self._final_lat
                + self.edge_latency)

    def _skew(self, m, value, n, name):
        """A data delay of ``n`` cycles at the array's edge whose last cycle is a register:
        a LUT RAM's output is slow (block RAM's is a register already)."""
        if self._ram == "bram":
            return delay_ram(m, value, n, name, "bram")
        return delay(m, delay_ram(m, value, n - 1, name, "lutram"), 1, f"{name}_q")

    def _line(self, m, value, n, name):
        """A data delay beside the final adder: registers (ECP5, where they are close to the
        adder), or block RAM on a device without LUT RAM, whose logic cells are scarce."""
        if self._ram == "bram":
            return delay_ram(m, value, n, name, "bram")
        return delay(m, value, n, name)

    def elaborate(self, platform):
        m = Module()
        rows, cols, fmt = self._rows, self._cols, self._acc_fmt
        w, n = fmt.width, self._n
        pe_n = E5M3.width if self._in_fmt is None else n

        pes = self._pes
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # The command's settings reach each row (column) through one register at the edge,
        # then a register tree whose leaves sit beside their users: one bit would otherwise
        # drive every row of the array from one place.
        depth = self.settle_latency - 1

        def settle(value, n, name):
            first = Signal(name=f"{name}_q")
            m.d.sync += first.eq(value)
            copies = fanout_tree(m, first, n, name)
            # Every setting takes the same time, whatever its number of users.
            return [delay(m, c, depth - fanout_depth(n), f"{name}_{i}_pad")
                    for i, c in enumerate(copies)]

        a_e4m3 = settle(self.a_e4m3, rows, "a_e4m3")
        w_e4m3 = settle(self.w_e4m3, cols, "w_e4m3")
        rna = settle(self.rna, cols, "rna")

        # Weights travel to their PEs through registers, never broadcast: a row of weights is
        # widened to E5M3 and registered, then column c's weight moves right through c
        # registers along the top edge and down its column one PE per cycle, with the row it
        # is for and its bank. So every weight signal drives one PE and the next register,
        # and PE (r, c) holds its weight r + c cycles later than a broadcast would give it.
        # (The engine starts a pass well after that; docs/architecture.md.)
        #
        # The control (write enable, row, bank) is the same for every column, only delayed by
        # r + c; Yosys would merge the equal delays of all columns into one chain whose
        # registers each drive a whole anti-diagonal of PEs, across the array. So each column's
        # control starts from a copy of its own, a leaf of a register tree (hw.common), and
        # the data wait for it. (The tree has no reset: a write it holds when the array is
        # reset still lands, in a weight bank that every command loads before it uses it.)
        row_bits = max(1, (rows - 1).bit_length())
        ctl = Cat(self.w_we, self.w_row[:row_bits], self.w_bank)     # we, row, bank
        ctl_copies = fanout_tree(m, ctl, cols, "w_ctl")
        for c in range(cols):
            wide = Signal(pe_n, name=f"w_wide{c}", reset_less=True)
            m.d.sync += wide.eq(self._widen(self.w_data[n * c:n * c + n], w_e4m3[c]))
            # Only the control part (the write enable) needs a reset.
            data = delay(m, wide, c + self._w_tree - 1, f"w_right{c}")
            stage = delay(m, ctl_copies[c], c, f"w_right_ctl{c}", reset_less=False)
            for r in range(rows):
                if r:
                    data = delay(m, data, 1, f"w_down{r}_{c}")
                    stage = delay(m, stage, 1, f"w_down_ctl{r}_{c}", reset_less=False)
                we = stage[0]
                row, bank = stage[1:1 + row_bits], stage[1 + row_bits]
                pe = pes[r][c]
                m.d.comb += [pe.w_data.eq(data), pe.w_bank.eq(bank),
                             pe.w_we.eq(we & (row == r))]

        # Activations: widened, registered, then row r delayed by r PE latencies; they move
        # right by one column per cycle inside the PEs. The bank select is the same for every
        # row: it reaches them through a register tree (one register would drive every row's
        # skew from one place), and the rest of the row waits as long.
        banks = fanout_tree(m, self.bank, rows, "a_bank")
        for r in range(rows):
            wide = self._widen(self.a[n * r:n * r + n], a_e4m3[r])
            act = Cat(wide, self.kvalid[r], self.boundary[r])
            # Registers after the conversion, then the skew, whose last cycle is a register:
            # a LUT RAM's output is slow, and the multiplier's first stage follows.
            act = Cat(delay(m, act, self.edge_latency, f"conv_a{r}"), banks[r])
            if r:
                act = self._skew(m, act, r * self._v_lat, f"skew_a{r}")
            first = pes[r][0]
            m.d.comb += [first.a.eq(act[:pe_n]), first.kvalid.eq(act[pe_n]),
                         first.boundary.eq(act[pe_n + 1]), first.bank.eq(act[pe_n + 2])]
            for c in range(1, cols):
                left, pe = pes[r][c - 1], pes[r][c]
                m.d.comb += [pe.a.eq(left.a_out), pe.kvalid.eq(left.kvalid_out),
                             pe.boundary.eq(left.boundary_out), pe.bank.eq(left.bank_out)]

        # Column feeds: column c meets its activations c cycles after column 0, and every
        # activation enters m_latency cycles before the sums it meets (plus the registers
        # after the activations' conversion).
        outs = []
        for c in range(cols):
            n_skew = self.edge_latency + self._m_lat + c
            chunk_in = self.chunk_in[w * c:w * c + w]
            # A conventional array has no total to carry down.
            total_in = self.total_in[w * c:w * c + w] if self._chunked else Const(0, w)
            sums = Cat(chunk_in, rna[c]) if not self._chunked else Cat(chunk_in, total_in,
                                                                           rna[c])
            top = Cat(self._skew(m, sums, n_skew, f"skew_top{c}"),
                      delay(m, Cat(self.last, self.valid), n_skew, f"skew_flags{c}",
                            reset_less=False))
            if not self._chunked:
                top = Cat(top[:w], total_in, top[w:])
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
            chunk = self._line(m, bottom.chunk_out, self._final_lat, f"chunk{c}")
            flags = delay(m, flags, self._final_lat, f"flags_f{c}", reset_less=False)
            res = Signal(2 * w, name=f"res{c}", reset_less=True)
            res_flags = Signal(2, name=f"res_flags{c}")
            m.d.sync += res_flags.eq(flags)
            if self._chunked:
                # The final add of docs/numerics.md section 4, total = add(total, chunk), on
                # the last pass.
                m.submodules[f"final_{c}"] = final = self._finals[c]
                operands = delay(m, Cat(bottom.total_out, bottom.chunk_out, bottom.rna_out), 1,
                                 f"final_in{c}")
                m.d.comb += [final.a.eq(operands[:w]), final.b.eq(operands[w:2 * w]),
                             final.rna.eq(operands[2 * w])]
                total = self._line(m, bottom.total_out, self._final_lat, f"total{c}")
                m.d.sync += res.eq(Cat(chunk, Mux(flags[0], final.s, total)))
            else:
                # The running sum is the result; it is delayed like a final add would be.
                m.d.sync += res.eq(Cat(chunk, Mux(flags[0], chunk, 0)))
            outs.append(Cat(delay(m, res, cols - 1 - c, f"deskew{c}"),
                            delay(m, res_flags, cols - 1 - c, f"deskew_flags{c}",
                                  reset_less=False)))
        m.d.comb += [
            self.chunk_out.eq(Cat(*(o[:w] for o in outs))),
            self.total_out.eq(Cat(*(o[w:2 * w] for o in outs))),
            self.out_last.eq(outs[0][2 * w]),
            self.out_valid.eq(outs[0][2 * w + 1]),
        ]
        return m

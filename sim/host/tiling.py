"""GEMMs of any size on any build: the host splits ``M``, ``N`` and ``K`` into tiles that fit
the device's buffers and runs one command per tile, bit-identical to one GEMM over the whole
matrices (docs/host-interface.md, "GEMMs larger than the buffers").

A ``K`` tile that ends at a chunk boundary leaves the folded total in the accumulator memory,
and the next tile adds into it (``accumulate``), as the next chunk would. A tile that ends inside
a chunk (no chunking, or a chunk longer than the buffers hold) leaves the running chunk unfolded
beside the total (``carry_out``), and the next tile continues it (``carry_in``): accumulating
only the totals would round differently.
"""

from dataclasses import dataclass, replace
from math import lcm

__all__ = ["DIM_MAX", "KTile", "TilePlan", "plan_gemm"]

#: M, N and K of one command: 16-bit registers.
DIM_MAX = 0xFFFF


@dataclass(frozen=True)
class KTile:
    """One ``K`` tile of an output tile: ``k0 <= k < k1``, and how its command starts and
    ends."""
    k0: int
    k1: int
    #: Add into the totals in the accumulator memory (the ``C`` given, or the earlier tiles').
    accumulate: bool
    #: Continue the running chunk an earlier tile left (``carry_out``).
    carry_in: bool
    #: Leave the running chunk unfolded for the next tile.
    carry_out: bool


@dataclass(frozen=True)
class TilePlan:
    """Tile sizes of an ``m x k`` by ``k x n`` GEMM and the order the tiles run in."""
    m: int
    n: int
    k: int
    mt: int
    nt: int
    kt: int
    #: ``"n"``: output tiles column by column (a ``B`` tile serves every row tile), ``"m"``:
    #: row by row.
    outer: str
    #: The effective chunk length (``None``: one chunk of all ``K``).
    chunk: int | None

    @property
    def tiles(self):
        """Number of commands (one per ``(M, N, K)`` tile)."""
        return -(-self.m // self.mt) * -(-self.n // self.nt) * -(-self.k // self.kt)

    def output_tiles(self):
        """``(m0, m1, n0, n1)`` of every output tile, in the order they run."""
        ms = [(i, min(i + self.mt, self.m)) for i in range(0, self.m, self.mt)]
        ns = [(j, min(j + self.nt, self.n)) for j in range(0, self.n, self.nt)]
        if self.outer == "n":
            return [(m0, m1, n0, n1) for n0, n1 in ns for m0, m1 in ms]
        return [(m0, m1, n0, n1) for m0, m1 in ms for n0, n1 in ns]

    def k_tiles(self, accumulate=False):
        """The :class:`KTile` of one output tile; ``accumulate``: the first adds into a
        loaded ``C``."""
        span = self.k if self.chunk is None else self.chunk
        out = []
        for k0 in range(0, self.k, self.kt):
            k1 = min(k0 + self.kt, self.k)
            carry_in = k0 > 0 and k0 % span != 0
            out.append(KTile(k0, k1, accumulate=(accumulate if k0 == 0 else not carry_in),
                             carry_in=carry_in, carry_out=k1 < self.k and k1 % span != 0))
        return out


def plan_gemm(m, n, k, *, rows, cols, a_words, b_bytes, acc_words, chunk, split=1,
              beat_bytes=8):
    """Tiles for an ``m x k`` by ``k x n`` GEMM on a ``rows x cols`` array with these buffer
    capacities (CONFIG, A_WORDS, B_BYTES, ACC_WORDS).

    ``K`` is kept whole when it fits, else split at a multiple of the chunk length (and of
    ``rows``, where that fits too), so that each tile ends on a chunk boundary; without
    chunking, any length (a multiple of ``rows`` where possible); with a chunk longer than
    the buffers hold, a power of two that divides it. Then ``N`` and ``M`` are made as large as
    the buffers allow, ``N`` in multiples of ``cols``.

    ``split`` (a double-buffered device) lets the plan cut ``M`` and ``N`` into up to that
    many more output tiles, where the estimated cycles say so: the transfers of one tile then
    run while another computes, and only the first loads and the last read are not hidden.
    ``beat_bytes`` is the stream width, for the estimate.
    """
    for name, v in (("m", m), ("n", n), ("k", k), ("rows", rows), ("cols", cols),
                    ("a_words", a_words), ("b_bytes", b_bytes), ("acc_words", acc_words)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                              or chunk < 1 or chunk & (chunk - 1)):
        raise ValueError(f"chunk must be a power of two or None, not {chunk!r}")
    # A chunk at least as long as K is one chunk of all K.
    span = None if chunk is None or chunk >= k else chunk
    # The longest K tile with one row of A and a B tile as wide as the array (when N allows).
    kcap = min(k, DIM_MAX, a_words * rows, b_bytes)
    wide = b_bytes // min(n, cols)
    if wide >= 1:
        kcap = min(kcap, wide)
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise ValueError(f"split must be a positive integer, not {split!r}")
    plans = [_plan(m, n, k, kt, span, rows, cols, a_words, b_bytes, acc_words)
             for kt in _k_tile_lengths(k, kcap, span, rows)]
    if split == 1:
        return min(plans, key=lambda p: _estimate(p, rows, cols))
    plans = [q for p in plans for q in _splits(p, split, cols)]
    return min(plans, key=lambda p: _estimate_overlapped(p, rows, cols, beat_bytes))


def _k_tile_lengths(k, kcap, span, rows):
    """The K tile lengths worth considering, longest first: all of K when it fits, else (and
    also shorter, to leave room for larger M and N tiles) lengths that end on chunk boundaries
    (multiples of the chunk, and of ``rows`` where that fits), or with no chunk boundary to
    keep, multiples of ``rows``, or inside a longer chunk, powers of two that divide it."""
    if span is not None and span <= kcap:
        step = lcm(span, rows)
        step = step if step <= kcap else span
    elif span is None:
        step = rows if kcap >= rows else 1
    else:
        step = None
    if step is None:
        top = 1 << (kcap.bit_length() - 1)
        lengths = [top >> i for i in range(top.bit_length())]
    else:
        top = kcap // step * step
        lengths = [top] + [step << i for i in range(20) if (step << i) < top]
    if k <= kcap:
        lengths.append(k)
    return sorted(set(lengths), reverse=True)


def _plan(m, n, k, kt, span, rows, cols, a_words, b_bytes, acc_words):
    nt = min(n, DIM_MAX, b_bytes // kt, acc_words * cols)
    if nt < n and nt >= cols:
        nt = nt // cols * cols
    mt = min(m, DIM_MAX, a_words // -(-kt // rows), acc_words // -(-nt // cols))
    return TilePlan(m, n, k, mt, nt, kt, _order(m, n, k, mt, nt, kt), span)


def _order(m, n, k, mt, nt, kt):
    """``"n"`` or ``"m"``: the order of the output tiles that sends fewer operand bytes (a
    tile already in its buffer is not sent again)."""
    nm, nn, nk = -(-m // mt), -(-n // nt), -(-k // kt)
    a_tile, b_tile = mt * kt, kt * nt
    by_n = (a_tile * (1 if nm * nk == 1 else nn * nm * nk)
            + b_tile * (nn if nk == 1 else nn * nm * nk))
    by_m = (a_tile * (nm if nk == 1 else nm * nn * nk)
            + b_tile * (1 if nn * nk == 1 else nm * nn * nk))
    return "n" if by_n <= by_m else "m"


def _splits(plan, split, cols):
    """``plan`` and the plans with its ``M`` and ``N`` tiles halved, into up to ``split``
    times as many output tiles (``N`` tiles in multiples of ``cols``), each in the order that
    sends the fewest operand bytes."""
    out = []
    for i in range(split.bit_length()):
        for j in range(split.bit_length() - i):
            mt = -(-plan.mt // (1 << i))
            nt = -(-plan.nt // (1 << j))
            if nt < plan.n:
                nt = max(cols, -(-nt // cols) * cols)
            if mt < 1 or (i and mt == plan.mt) or (j and nt >= plan.nt):
                continue
            out.append(replace(plan, mt=mt, nt=nt,
                               outer=_order(plan.m, plan.n, plan.k, mt, nt, plan.kt)))
    return out


def _pass_cycles(mt, rows, cols):
    """Cycles of one pass of ``mt`` rows, roughly: at least the rows, and while they are few,
    half a round of the two weight banks (a pass, the wait before its bank is rewritten and
    the ``rows * cols`` cycles of the next weights; hw.gemm.engine)."""
    flush = 7 + (rows - 1) * max(0, 10 - cols)
    return max(mt + 1, (mt + flush + rows * cols + 4 + 1) // 2)


def _estimate_overlapped(plan, rows, cols, beat_bytes):
    """Cycles of a plan on a double-buffered device, roughly: every command's passes and host
    round trips, the first tile's loads and the last tile's read (the other transfers run
    beside the commands)."""
    m, n, k, mt, nt, kt = plan.m, plan.n, plan.k, plan.mt, plan.nt, plan.kt
    nm, nn, nk = -(-m // mt), -(-n // nt), -(-k // kt)
    kb, ntc = -(-kt // rows), -(-nt // cols)
    compute = nm * nn * nk * (kb * ntc * _pass_cycles(mt, rows, cols) + 300)
    p_rows = 1 << (rows - 1).bit_length()
    p_cols = 1 << (cols - 1).bit_length()
    a_load = mt * kb * max(1, p_rows // beat_bytes)
    b_load = -(-kt * nt // beat_bytes)
    c_read = mt * ntc * max(1, 2 * p_cols // beat_bytes)
    # Transfers that outlast the command beside them are not hidden either.
    per_command = kb * ntc * _pass_cycles(mt, rows, cols)
    spill = max(0, a_load + b_load + c_read - per_command) * (nm * nn * nk - 1)
    return compute + a_load + b_load + c_read + spill


def _estimate(plan, rows, cols):
    """Cycles of a plan, roughly: each pass of ``rows`` K by ``cols`` N streams the tile's M
    rows of A (at least a weight load's ``rows * cols`` cycles and the array's latency), each
    command costs some host round trips, and every transferred element a beat."""
    m, n, k, mt, nt, kt = plan.m, plan.n, plan.k, plan.mt, plan.nt, plan.kt
    nm, nn, nk = -(-m // mt), -(-n // nt), -(-k // kt)
    passes = -(-kt // rows) * -(-nt // cols)
    compute = nm * nn * nk * (passes * max(mt, rows * cols, rows + cols + 16) + 200)
    if plan.outer == "n":
        a_loads = 1 if nm * nk == 1 else nn * nm * nk
        b_loads = nn if nk == 1 else nn * nm * nk
    else:
        a_loads = nm if nk == 1 else nm * nn * nk
        b_loads = 1 if nn * nk == 1 else nm * nn * nk
    return compute + a_loads * mt * kt + b_loads * kt * nt + 2 * m * n

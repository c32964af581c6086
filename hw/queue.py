"""The command queue of the accelerator top: entries in order, tickets, and the log of failures.

Ref: docs/host-interface.md ("Command queue").

The top decides each CTRL write and, if it passes its checks, pushes an entry (everything the
command will use). :class:`CommandQueue` holds the entries in order and counts tickets: the n-th
command pushed since reset has ticket n (modulo 2**16). The top pops the head when what it needs
is free and tells the queue which kind of command it started (a GEMM or a transfer) and when each
ends; at most one GEMM and one transfer run at once. ``completed`` counts the commands that have
completed with every command before them, without a reorder buffer: it is the ticket of the older
of the two in flight, or of the next to start. A transfer that fails puts its ticket into the
error log, which the host reads entry by entry.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import fifo
from amaranth.lib.wiring import In, Out

from .common import CheckedComponent

__all__ = ["CommandQueue"]


class CommandQueue(CheckedComponent):
    """In-order command entries with tickets and an error log.

    Parameters
    ----------
    layout : data.Layout
        The layout of an entry.
    depth : int
        Entries held besides the running commands, 0 to 15. With 0 there is no storage: the
        entry pushed is the head in the same cycle, and ``room`` is what the top says can start
        at once (``start_now``).

    Members
    -------
    push : In(1)
        Queue ``entry`` (only with ``room``).
    entry : In(layout)
    room : Out(1)
        The queue takes an entry.
    start_now : In(1)
        With ``depth=0``: the entry pushed would start in this cycle.
    head : Out(layout), head_valid : Out(1)
        The oldest entry not started.
    pop : In(1)
        The head starts; ``pop_gemm`` says whether it is a GEMM (else a transfer).
    pop_gemm : In(1)
    gemm_end, xfer_end : In(1)
        The running GEMM, the running transfer ends.
    fail : In(1)
        The running transfer failed (with ``xfer_end`` or before it): its ticket goes into the
        log. ``log_room`` must be set when a transfer starts, so that no failure is lost.
    log_room : Out(1)
    log_pop : In(1), log_valid : Out(1), log_ticket : Out(16), log_level : Out(8)
        The log's oldest ticket; ``log_pop`` removes it.
    accepted, completed : Out(16)
        Tickets given, and commands completed with every command before them (modulo 2**16).
    pending : Out(8)
        Commands pushed and not completed.
    gemm_busy, xfer_busy : Out(1)
        A GEMM, a transfer is in flight (from its pop to its end).
    """

    def __init__(self, layout, depth=4):
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 15:
            raise ValueError(f"depth must be 0 to 15 entries, not {depth!r}")
        self._layout = layout
        self._depth = depth
        super().__init__({
            "push": In(1), "entry": In(layout), "room": Out(1), "start_now": In(1),
            "head": Out(layout), "head_valid": Out(1),
            "pop": In(1), "pop_gemm": In(1), "gemm_end": In(1), "xfer_end": In(1),
            "fail": In(1), "log_room": Out(1),
            "log_pop": In(1), "log_valid": Out(1), "log_ticket": Out(16), "log_level": Out(8),
            "accepted": Out(16), "completed": Out(16), "pending": Out(8),
            "gemm_busy": Out(1), "xfer_busy": Out(1),
        })

    depth = property(lambda self: self._depth)

    def elaborate(self, platform):
        m = Module()
        if self._depth:
            m.submodules.entries = entries = fifo.SyncFIFOBuffered(
                width=self._layout.size, depth=self._depth)
            m.d.comb += [entries.w_data.eq(self.entry), entries.w_en.eq(self.push),
                         entries.r_en.eq(self.pop), self.room.eq(entries.w_rdy),
                         self.head.eq(entries.r_data), self.head_valid.eq(entries.r_rdy)]
        else:
            m.d.comb += [self.head.eq(self.entry), self.head_valid.eq(self.push),
                         self.room.eq(self.start_now)]

        # Tickets. At most one GEMM and one transfer are in flight; ``g_older``: the GEMM
        # started before the transfer. ``completed`` and ``pending`` are registered from the
        # next state, so that they equal their definition in every cycle and a register read
        # takes them from flip-flops.
        accepted, started = Signal(16), Signal(16)
        gemm_ticket, xfer_ticket = Signal(16), Signal(16)
        g_older = Signal()
        nxt = {name: Signal.like(sig, name=f"{name}_next") for name, sig in (
            ("accepted", accepted), ("started", started), ("gemm_ticket", gemm_ticket),
            ("xfer_ticket", xfer_ticket), ("g_older", g_older),
            ("gemm_busy", self.gemm_busy), ("xfer_busy", self.xfer_busy))}
        m.d.comb += [nxt["accepted"].eq(accepted), nxt["started"].eq(started),
                     nxt["gemm_ticket"].eq(gemm_ticket), nxt["xfer_ticket"].eq(xfer_ticket),
                     nxt["g_older"].eq(g_older), nxt["gemm_busy"].eq(self.gemm_busy),
                     nxt["xfer_busy"].eq(self.xfer_busy)]
        with m.If(self.push):
            m.d.comb += nxt["accepted"].eq(accepted + 1)
        with m.If(self.gemm_end):
            m.d.comb += nxt["gemm_busy"].eq(0)
        with m.If(self.xfer_end):
            m.d.comb += nxt["xfer_busy"].eq(0)
        with m.If(self.pop):
            m.d.comb += nxt["started"].eq(started + 1)
            with m.If(self.pop_gemm):
                m.d.comb += [nxt["gemm_busy"].eq(1), nxt["gemm_ticket"].eq(started),
                             nxt["g_older"].eq(~self.xfer_busy)]
            with m.Else():
                m.d.comb += [nxt["xfer_busy"].eq(1), nxt["xfer_ticket"].eq(started),
                             nxt["g_older"].eq(self.gemm_busy)]
        m.d.sync += [accepted.eq(nxt["accepted"]), started.eq(nxt["started"]),
                     gemm_ticket.eq(nxt["gemm_ticket"]), xfer_ticket.eq(nxt["xfer_ticket"]),
                     g_older.eq(nxt["g_older"]), self.gemm_busy.eq(nxt["gemm_busy"]),
                     self.xfer_busy.eq(nxt["xfer_busy"])]
        # The ends come late in the cycle (from the transfers' handshakes): they only choose
        # among values computed without them, so no end reaches a carry chain.
        acc8 = nxt["accepted"][:8]
        tickets = (nxt["gemm_ticket"], nxt["xfer_ticket"], nxt["started"])
        pendings = [Signal(8, name=f"pending_{i}") for i in range(3)]
        m.d.comb += [p.eq(acc8 - t[:8]) for p, t in zip(pendings, tickets)]
        by_gemm = nxt["gemm_busy"] & (nxt["g_older"] | ~nxt["xfer_busy"])
        by_xfer = nxt["xfer_busy"]

        def choose(values):
            return Mux(by_gemm, values[0], Mux(by_xfer, values[1], values[2]))

        m.d.sync += [self.completed.eq(choose(tickets)),
                     self.pending.eq(choose(pendings))]    # (at most depth + 2)
        m.d.comb += self.accepted.eq(accepted)

        # The log of failed transfers: their tickets.
        m.submodules.log = log = fifo.SyncFIFO(width=16, depth=max(1, self._depth))
        m.d.comb += [log.w_data.eq(xfer_ticket), log.w_en.eq(self.fail),
                     log.r_en.eq(self.log_pop), self.log_room.eq(log.w_rdy),
                     self.log_valid.eq(log.r_rdy),
                     self.log_ticket.eq(Mux(log.r_rdy, log.r_data, 0)),
                     self.log_level.eq(log.r_level)]
        return m

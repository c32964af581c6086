"""8N1 UART receiver and transmitter: one start bit, eight data bits (LSB first), one stop bit.

Ref: TIA-232 asynchronous framing; the bit timing is ``divisor`` clock cycles per bit, so
``baud = f_clk / divisor`` (100 MHz / 868 = 115200 baud within 0.01 %).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .common import CheckedComponent

__all__ = ["UartRx", "UartTx", "check_divisor"]

#: The fewest clock cycles per bit: the receiver needs a mid-bit sample that stays clear of
#: the one-cycle uncertainty of the synchronised start edge.
DIVISOR_MIN = 4


def check_divisor(divisor):
    """Raise ``ValueError`` unless ``divisor`` is an integer of at least :data:`DIVISOR_MIN`;
    returns it."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < DIVISOR_MIN:
        raise ValueError(f"Divisor (clock cycles per bit) must be an integer of at least "
                         f"{DIVISOR_MIN}, not {divisor!r}")
    return divisor


class _UartLine(CheckedComponent):
    """What the receiver and the transmitter share: a checked ``divisor``."""

    def __init__(self, divisor):
        self._divisor = check_divisor(divisor)
        super().__init__()

    divisor = property(lambda self: self._divisor)


class UartRx(_UartLine):
    """8N1 receiver.

    The line goes through a two-flop synchroniser. A falling edge starts a frame; the start bit
    is sampled again in its middle (a shorter pulse is a glitch and is ignored), then every
    data bit and the stop bit one bit time apart. A stop bit of 0 drops the byte and strobes
    ``framing_error``; the receiver then waits for the next falling edge, so a line held low
    (a break) gives a single error.

    The samples fall ``h = (divisor - 1) // 2`` cycles after the first low synchronised
    sample, which is ``h`` to ``h + 1`` cycles after the true edge. A sender slower by a
    fraction ``e`` moves the stop bit's start to ``9 * divisor * (1 + e)`` and a faster one its
    end to ``10 * divisor * (1 - e)`` (the next start bit may follow at once), so the receiver
    takes a baud error up to ``min(h / (9 * divisor), (divisor - h - 1) / (10 * divisor))``:
    2.8 % at a divisor of 4, 4.0 % at 5, 4.2 % at 8, 4.8 % at 25 (5 % in the limit).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : In(1)
        The line, asynchronous, idle high.
    o : Out(stream.Signature(8, always_ready=True))
        A received byte: ``valid`` for one cycle with ``payload``. It cannot be held back.
    framing_error : Out(1)
        One-cycle strobe: a frame whose stop bit was 0 was dropped.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8, always_ready=True))
    framing_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        rx = Signal(init=1)
        rx_prev = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        m.d.sync += rx_prev.eq(rx)

        busy = Signal()
        timer = Signal(range(d))
        index = Signal(range(10))        # 0 start, 1-8 data, 9 stop
        shreg = Signal(8, reset_less=True)
        m.d.sync += [self.o.valid.eq(0), self.framing_error.eq(0)]
        m.d.comb += self.o.payload.eq(shreg)
        with m.If(~busy):
            with m.If(rx_prev & ~rx):
                # Sampled (d - 1) // 2 cycles from here: a little before mid-bit, because a
                # fast sender's next start bit can follow the stop bit at once.
                m.d.sync += [busy.eq(1), timer.eq((d - 1) // 2 - 1), index.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(d - 1), index.eq(index + 1)]
            with m.If(index == 0):
                with m.If(rx):
                    m.d.sync += busy.eq(0)      # a glitch, not a start bit
            with m.Elif(index == 9):
                m.d.sync += busy.eq(0)
                with m.If(rx):
                    m.d.sync += self.o.valid.eq(1)
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
            with m.Else():
                m.d.sync += shreg.eq(Cat(shreg[1:], rx))
        return m


class UartTx(_UartLine):
    """8N1 transmitter.

    A byte taken from ``i`` goes out as a start bit, its eight bits LSB first and a stop bit,
    each exactly ``divisor`` cycles; ``i.ready`` rises in the last cycle of the stop bit, so
    back-to-back bytes take exactly ``10 * divisor`` cycles each. ``tx`` is a register.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    i : In(stream.Signature(8))
        The bytes to send.
    tx : Out(1)
        The line, idle high.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        busy = Signal()
        timer = Signal(range(d))
        left = Signal(range(10))        # bits still to put on the line after the current one
        shreg = Signal(9, reset_less=True)      # data bits, then the stop bit
        last = timer == 0
        m.d.comb += self.i.ready.eq(~busy | (last & (left == 0)))
        with m.If(busy & last):
            m.d.sync += [timer.eq(d - 1), left.eq(left - 1), self.tx.eq(shreg[0]),
                         shreg.eq(Cat(shreg[1:], 1))]
            with m.If(left == 0):
                m.d.sync += busy.eq(0)
        with m.Elif(busy):
            m.d.sync += timer.eq(timer - 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [busy.eq(1), timer.eq(d - 1), left.eq(9), self.tx.eq(0),
                         shreg.eq(Cat(self.i.payload, 1))]
        return m

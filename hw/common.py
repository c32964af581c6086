"""Helpers shared by the whole RTL: the component base class that validates its parameters,
and delay lines of registers or RAM."""

import functools

from amaranth.hdl import Mux, Signal
from amaranth.lib import wiring

__all__ = ["CheckedComponent", "Rejected", "delay", "delay_ram", "fanout", "fanout_tree",
           "fanout_depth", "RAM_KINDS"]


class Rejected:
    """What a component whose constructor raised becomes: an inert object.

    Amaranth warns when an elaboratable is created and never used; a component whose
    parameters were rejected can never be used, and the warning, emitted much later when the
    object is collected, would only hide the real error. Its class is switched to this plain
    one, which Amaranth does not track.
    """


class CheckedComponent(wiring.Component):
    """A component whose constructor validates its parameters: one that raises stays quiet.

    Amaranth warns when an elaboratable is created and never used; a component whose
    parameters were rejected can never be used, and the warning, emitted much later, would
    only hide the real error.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def checked_init(self, *args, **kw):
            try:
                init(self, *args, **kw)
            except Exception:
                self.__class__ = Rejected
                raise

        cls.__init__ = checked_init


#: Where :func:`delay_ram` keeps its lines.
RAM_KINDS = ("lutram", "bram")


def delay_ram(m, value, n, name, ram="lutram"):
    """``value`` delayed by ``n`` cycles through a ring buffer: far fewer flip-flops than
    :func:`delay` for a long or wide line. Its contents are not reset, so it is for data only,
    never for valid flags.

    ``ram="lutram"``: distributed (LUT) RAM, one write and one asynchronous read per cycle at
    the same address, so the read returns what was written ``n`` cycles ago (ECP5).
    ``ram="bram"``: block RAM, for devices without LUT RAM (iCE40, where the LUT-RAM form
    becomes flip-flops and multiplexers): a synchronous read one address ahead of the write,
    whose output register is the last cycle of the delay.
    """
    if ram not in RAM_KINDS:
        raise ValueError(f"ram must be one of {', '.join(RAM_KINDS)}, not {ram!r}")
    if n < 3:
        return delay(m, value, n, name)
    from amaranth.lib import memory
    width = len(value)
    # The block RAM's read address is always one ahead of its write address, so the two never
    # meet: ``no_rw_check`` tells Yosys so (below), which otherwise builds read-during-write
    # forwarding beside the RAM (flip-flops holding the written data and a multiplexer per
    # bit) that could never be used.
    attrs = {"ram_style": "block", "no_rw_check": 1} if ram == "bram" else None
    mem = memory.Memory(shape=width, depth=n, init=[], attrs=attrs)
    m.submodules[f"{name}_ram"] = mem
    ptr = Signal(range(n), name=f"{name}_ptr")
    m.d.sync += ptr.eq(Mux(ptr == n - 1, 0, ptr + 1))
    wp = mem.write_port()
    m.d.comb += [wp.addr.eq(ptr), wp.data.eq(value), wp.en.eq(1)]
    out = Signal(value.shape(), name=f"{name}_out")
    if ram == "lutram":
        rp = mem.read_port(domain="comb")
        m.d.comb += [rp.addr.eq(ptr), out.eq(rp.data)]
    else:
        # Read at cycle t the slot written at t + 1 - n (the next one to be overwritten); the
        # read register returns it at t + 1. The register is written beside an asynchronous
        # read rather than as a synchronous read port: Yosys applies ``no_rw_check`` when it
        # merges such a register into the port, and the block RAM's own register holds it.
        rp = mem.read_port(domain="comb")
        out = Signal(value.shape(), name=f"{name}_out", reset_less=True)
        m.d.comb += rp.addr.eq(Mux(ptr == n - 1, 0, ptr + 1))
        m.d.sync += out.eq(rp.data)
    return out


#: The registers with the same input that Yosys keeps apart, bit by bit: (inverted, initial
#: value) for every bit, with the four combinations. Yosys merges flip-flops with the same input
#: and initial value one bit at a time (after mapping), so copies must differ in every bit;
#: an inverted copy costs nothing where the inversion folds into the LUT that reads it.
_VARIANTS = ((0, 0), (1, 0), (0, 1), (1, 1))


def _copy(m, value, variant, name):
    """A registered copy of ``value`` in one of :data:`_VARIANTS`: the value it holds is
    returned (the register, or its inversion)."""
    inv, init = variant
    width = len(value)
    ones = (1 << width) - 1
    reg = Signal(width, name=name, init=ones if init else 0, reset_less=True)
    m.d.sync += reg.eq(~value if inv else value)
    return ~reg if inv else reg


def fanout(m, value, n, name):
    """``n`` registered copies of ``value``, one cycle later, for a signal that feeds many
    distant users (the block RAMs of a wide memory, spread over the chip): each copy drives
    one group of them and is placed near it, so that no single net crosses the chip.

    Yosys merges flip-flops with the same input, so the copies differ in every bit (see
    :data:`_VARIANTS`): there are at most four distinct registers, and copy ``i`` is the
    same as copy ``i + 4``. For more, use :func:`fanout_tree`.
    """
    return [_copy(m, value, _VARIANTS[i % 4], f"{name}_{i}") for i in range(n)]


#: At most this many registers take their input from one register of :func:`fanout_tree`.
TREE_ARITY = 4


def fanout_depth(n):
    """The levels of registers (cycles) :func:`fanout_tree` puts between a value and ``n``
    copies of it."""
    depth, reach = 1, TREE_ARITY
    while reach < n:
        depth, reach = depth + 1, reach * TREE_ARITY
    return depth


def fanout_tree(m, value, n, name):
    """``n`` copies of ``value``, :func:`fanout_depth` cycles later, through a tree of
    registers in which every register drives at most :data:`TREE_ARITY` others: for a setting
    (a flag of the command) or a control that every row or column of a large array needs.

    Yosys would fold the tree back into one register driving every user; the children of a
    register differ in every bit (:data:`_VARIANTS`: half of them inverted), so it cannot.
    """
    assert TREE_ARITY <= len(_VARIANTS)
    depth = fanout_depth(n)
    level = [value]
    for d in range(depth):
        # Only as many registers as the leaves below them need.
        need = -(-n // TREE_ARITY ** (depth - 1 - d))
        level = [_copy(m, level[j // TREE_ARITY], _VARIANTS[j % TREE_ARITY], f"{name}_t{d}_{j}")
                 for j in range(need)]
    return level


def delay(m, value, n, name, *, reset_less=True):
    """``value`` delayed by ``n`` cycles through registers of module ``m``. Datapath values
    need no reset; anything that says a value is valid does (``reset_less=False``), so that a
    reset empties the pipeline."""
    for i in range(n):
        reg = Signal(value.shape(), name=f"{name}_d{i + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value

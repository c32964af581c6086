"""The register map of the accelerator top, described once.

Ref: docs/host-interface.md ("Registers", "Errors"), whose tables are rendered from here.

Every register (:class:`Register`: name, byte address, access, reset value, what it holds and
its :class:`Field` s), the CTRL action bits (:class:`Ctrl`), the STATUS error codes
(:class:`ErrorCode`), the READ_C output formats (:class:`OutFmt`) and the register-map version
are defined in this module and nowhere else. From it come:

* the AXI4-Lite decoder of :class:`hw.top.Accelerator` (addresses, write masks, which
  registers are read-only, the CONFIG and STATUS words, through :attr:`Register.layout`);
* the host's packing and decoding of register words: :func:`pack`, :func:`unpack` and
  :func:`accepts`;
* the tables of docs/host-interface.md (:func:`markdown`), a C header for firmware
  (:func:`c_header`) and a JSON description (:func:`to_json`, read back by :func:`from_json`),
  which ``fp8accel regs`` writes.
"""

import re
from dataclasses import dataclass
from dataclasses import field as _field

from amaranth.hdl import Shape, unsigned
from amaranth.lib import data, enum

from .gemm.engine import Error as EngineError

__all__ = [
    "CONFIG",
    "CTRL",
    "ID",
    "ID_MAGIC",
    "ID_VALUE",
    "OPTIONS",
    "REGISTERS",
    "REGMAP",
    "REGMAP_VERSION",
    "STATUS",
    "UNUSED_ERRORS",
    "Access",
    "Ctrl",
    "ErrorCode",
    "Field",
    "OutFmt",
    "Reg",
    "Register",
    "RegisterMap",
    "accepts",
    "c_header",
    "describe",
    "from_json",
    "markdown",
    "markdown_sections",
    "pack",
    "register",
    "replace",
    "replace_sections",
    "text_map",
    "to_json",
    "unpack",
]

#: The register-map version, in ID[15:0]: it changes whenever a register or a field does.
REGMAP_VERSION = 5
#: ID[31:16]: "F8" "AC".
ID_MAGIC = 0xF8AC
#: The value of the ID register.
ID_VALUE = ID_MAGIC << 16 | REGMAP_VERSION


class Access(enum.Enum):
    """How the host may use a register."""
    #: Read only: a write answers SLVERR and changes nothing.
    R = "R"
    #: Write only (CTRL): a read answers SLVERR with ``RDATA = 0``.
    W = "W"
    #: Read and write.
    RW = "RW"


class Reg(enum.IntEnum, shape=8):
    """Register byte addresses (the AXI4-Lite address is 8 bits wide)."""
    ID = 0x00
    CONFIG = 0x04
    CTRL = 0x08
    STATUS = 0x0C
    M = 0x10
    N = 0x14
    K = 0x18
    OPTIONS = 0x1C
    CYCLES = 0x20
    ACTIVE = 0x24
    A_WORDS = 0x28
    B_BYTES = 0x2C
    ACC_WORDS = 0x30
    LR = 0x34
    MOMENTUM = 0x38
    WEIGHT_DECAY = 0x3C
    SEED = 0x40
    LENGTH = 0x44
    RNG_STATE = 0x48
    CLOCK = 0x4C
    FIRST_IN = 0x50
    LAST_OUT = 0x54
    BUILD = 0x58
    QUEUE = 0x5C
    ERRLOG = 0x60


class Ctrl(enum.IntEnum, shape=6):
    """The bits of CTRL: writing a word with exactly one of them set starts that action."""
    START = 1 << 0
    LOAD_A = 1 << 1
    LOAD_B = 1 << 2
    LOAD_C = 1 << 3
    READ_C = 1 << 4
    UPDATE = 1 << 5


class ErrorCode(enum.IntEnum, shape=8):
    """The codes of STATUS[15:8]: the engine's (:class:`hw.gemm.engine.Error`), and those of
    the host interface. 3 is not used."""
    NONE = EngineError.NONE.value
    ZERO_DIM = EngineError.ZERO_DIM.value
    TOO_LARGE = EngineError.TOO_LARGE.value
    BUSY = EngineError.BUSY.value
    FRAME = 5
    BAD_CTRL = 6
    BAD_SEED = 7
    NO_UPDATE = 8
    NO_FP8_OUT = 9


class OutFmt(enum.IntEnum, shape=2):
    """OPTIONS[17:16]: the format in which READ_C returns ``C``; 3 is refused."""
    ACC = 0
    E5M2 = 1
    E4M3 = 2


#: What each member of the enumerations means: ``{enum: {name: meaning}}``, one line each.
_MEANINGS = {
    Ctrl: {
        "START": "run the GEMM on the loaded operands",
        "LOAD_A": "receive A on the stream input",
        "LOAD_B": "receive B on the stream input",
        "LOAD_C": "receive C (accumulator codes) on the stream input",
        "READ_C": "send C on the stream output",
        "UPDATE": "run the weight update on the streams",
    },
    ErrorCode: {
        "NONE": "no error",
        "ZERO_DIM": "a dimension the action uses is 0 (LENGTH for UPDATE)",
        "TOO_LARGE": "what the action would read or write does not fit its buffer, or "
                     "names buffer 1 on a build with one (LENGTH over `2**24 - 1` for "
                     "UPDATE)",
        "BUSY": "the command queue is full (the command is not queued; those queued and "
                "running are unharmed)",
        "FRAME": "a stream frame ended early (`tlast`) or ran past its length",
        "BAD_CTRL": "a CTRL word with no action bit, several, or any bit above bit 5",
        "BAD_SEED": "UPDATE with SEED = 0",
        "NO_UPDATE": "UPDATE on a build without the weight-update unit",
        "NO_FP8_OUT": "READ_C with OPTIONS[17:16] != 0 on a build without the FP8 output "
                      "converters",
    },
    OutFmt: {
        "ACC": "the accumulator format",
        "E5M2": "`rne`, saturating",
        "E4M3": "`rne`, saturating",
    },
}

#: Error codes that are not used, with the reason.
UNUSED_ERRORS = {3: "not used: the 4-bit chunk field has no invalid value"}

#: The enumerations a field may take its values from, by name (for :func:`from_json`).
_ENUMS = {e.__name__: e for e in (Ctrl, ErrorCode, OutFmt)}


def describe(member):
    """The one-line meaning of a member of :class:`Ctrl`, :class:`ErrorCode` or
    :class:`OutFmt`."""
    return _MEANINGS[type(member)][member.name]


# Registers and fields ----------------------------------------------------------------------------

def _bits(msb, lsb):
    return f"[{msb}]" if msb == lsb else f"[{msb}:{lsb}]"


@dataclass(frozen=True)
class Field:
    """Bits ``[lsb + width - 1 : lsb]`` of a register.

    Parameters
    ----------
    name : str
        Lower case, a Python identifier: ``"chunk_log2"``.
    lsb, width : int
    doc : str
        What the field means, one line.
    enum : amaranth enum class, optional
        The field holds one of its members; a write of any other value is refused.
    inline : bool
        List the enum's values in the field's documentation (``False`` when they have a table
        of their own).
    """
    name: str
    lsb: int
    width: int
    doc: str
    enum: type = None
    inline: bool = True

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"Field name must be a lower-case identifier, not {self.name!r}")
        if not (0 <= self.lsb and 1 <= self.width and self.lsb + self.width <= 32):
            raise ValueError(f"Field {self.name} must lie within bits 31 to 0, not "
                             f"lsb={self.lsb} width={self.width}")
        if self.enum is not None and max(self.enum) >= 1 << self.width:
            raise ValueError(f"Field {self.name} is too narrow for {self.enum.__name__}")

    @property
    def msb(self):
        return self.lsb + self.width - 1

    @property
    def mask(self):
        """The field's bits, in place."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def bits(self):
        """``"[17:16]"``, ``"[0]"``."""
        return _bits(self.msb, self.lsb)

    @property
    def shape(self):
        """The field's shape in :attr:`Register.layout`: its enum if it has one of its width,
        else ``unsigned(width)``."""
        if self.enum is not None and Shape.cast(self.enum).width == self.width:
            return self.enum
        return unsigned(self.width)

    @property
    def invalid(self):
        """The values of the field that a write may not set (an enum field's non-members)."""
        if self.enum is None:
            return ()
        return tuple(v for v in range(1 << self.width) if v not in set(map(int, self.enum)))


@dataclass(frozen=True)
class Register:
    """One 32-bit register.

    Parameters
    ----------
    name : str
        Upper case: ``"OPTIONS"``.
    addr : int
        Byte address (word-aligned).
    access : Access
    doc : str
        What it holds, one line.
    fields : tuple of Field
        Named bit ranges; none for a register that holds one number.
    width : int
        The bits of a register without fields (``[width - 1:0]``); ignored with fields.
    reset : int or None
        Its value after reset, ``None`` where it depends on the build (CONFIG, the buffer
        sizes) or where it cannot be read (CTRL).
    unit : str or None
        ``"update"``: it belongs to the weight-update unit; on a build without it, a write
        that fits is accepted and ignored and a read gives 0. ``"stamps"``: a time stamp,
        read as 0 on a build without them.
    """
    name: str
    addr: int
    access: Access
    doc: str
    fields: tuple = ()
    width: int = 32
    reset: int = 0
    unit: str = None

    def __post_init__(self):
        if self.addr % 4 or not 0 <= self.addr < 256:
            raise ValueError(f"Register {self.name} must be at a word address below 0x100, "
                             f"not {self.addr:#x}")
        taken = 0
        for f in self.fields:
            if taken & f.mask:
                raise ValueError(f"Field {f.name} of {self.name} overlaps another field")
            taken |= f.mask

    @property
    def readable(self):
        return self.access is not Access.W

    @property
    def writable(self):
        return self.access is not Access.R

    @property
    def size(self):
        """The bits up to the highest that means something: 18 for OPTIONS, 16 for M."""
        if self.fields:
            return max(f.msb for f in self.fields) + 1
        return self.width

    @property
    def mask(self):
        """The bits that mean something."""
        if self.fields:
            return sum(f.mask for f in self.fields)
        return (1 << self.width) - 1

    @property
    def write_mask(self):
        """The bits a write may set: a write with any other bit set is refused (SLVERR) and
        changes nothing. The action register takes any word: a word that is not a single
        action bit is judged with the action (error 6, BAD_CTRL), not by the bus."""
        if not self.writable:
            return 0
        return 0xFFFF_FFFF if self.access is Access.W else self.mask

    @property
    def shape(self):
        """The register's storage: :attr:`layout` if it has fields, else ``unsigned(width)``."""
        return self.layout if self.fields else unsigned(self.width)

    @property
    def layout(self):
        """A :class:`amaranth.lib.data.FlexibleLayout` of :attr:`size` bits with a member per
        field, or ``None`` for a register without fields."""
        if not self.fields:
            return None
        return data.FlexibleLayout(self.size, {f.name: data.Field(f.shape, f.lsb)
                                               for f in self.fields})

    def field(self, name):
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}; it has "
                       f"{', '.join(f.name for f in self.fields) or 'none'}")

    def reserved(self):
        """``[(msb, lsb)]``: the runs of bits below 32 that are no field's."""
        runs, lsb = [], None
        for bit in range(33):
            free = bit < 32 and not self.mask >> bit & 1
            if free and lsb is None:
                lsb = bit
            elif not free and lsb is not None:
                runs.append((bit - 1, lsb))
                lsb = None
        return runs


def _flag(name, bit, doc):
    return Field(name, bit, 1, doc)


_OPTIONS_FIELDS = (
    _flag("a_e4m3", 0, "A is E4M3 (else E5M2)"),
    _flag("b_e4m3", 1, "B is E4M3 (else E5M2)"),
    Field("chunk_log2", 4, 4, "log2 of the chunk length"),
    _flag("no_chunk", 8, "no chunking: one running sum"),
    _flag("rna", 9, "accumulation rounds `rna` (else `rne`)"),
    _flag("trans_b", 11, "B stored transposed (N x K)"),
    _flag("accumulate", 12, "accumulate into C (else start from +0)"),
    _flag("update_rne", 13, "UPDATE rounds `rne` (else `sr`)"),
    _flag("carry_out", 14, "START leaves the last running chunk unfolded beside the total, "
                           "for a K tile that ends inside a chunk"),
    _flag("carry_in", 15, "START continues the chunk and total a CARRY_OUT command left"),
    Field("out_fmt", 16, 2, "READ_C format", enum=OutFmt),
    _flag("a_buf", 18, "the A buffer that LOAD_A writes and START reads (of two)"),
    _flag("b_buf", 19, "the B buffer that LOAD_B writes and START reads"),
    _flag("c_buf", 20, "the accumulator buffer that START, LOAD_C and READ_C use"),
)

_UPDATE_SCALAR = "a DLFLOAT16 code"

#: Every register, by address.
REGISTERS = (
    Register("ID", Reg.ID, Access.R, f'`0x{ID_VALUE:08X}`: "F8AC" and the register-map '
                                     f'version', reset=ID_VALUE,
             fields=(Field("version", 0, 16, "register-map version"),
                     Field("magic", 16, 16, "`0xF8AC`"))),
    Register("CONFIG", Reg.CONFIG, Access.R, "what the build holds", reset=None,
             fields=(Field("rows", 0, 8, "array rows"),
                     Field("cols", 8, 8, "array columns"),
                     Field("acc_exp", 16, 4, "accumulator exponent bits"),
                     Field("acc_man", 20, 4, "accumulator mantissa bits"),
                     Field("rbits_m1", 24, 5, "random bits per update rounding minus 1"),
                     _flag("no_update", 29, "built without the weight-update unit"),
                     _flag("no_fp8_out", 30, "built without the FP8 output converters"),
                     _flag("no_stamps", 31, "built without the time stamps (CLOCK, FIRST_IN, "
                                            "LAST_OUT read 0)"))),
    Register("CTRL", Reg.CTRL, Access.W, "write one action bit to start that action",
             reset=None,
             fields=tuple(_flag(c.name.lower(), c.bit_length() - 1, describe(c))
                          for c in Ctrl)),
    Register("STATUS", Reg.STATUS, Access.R, "the state of the last action",
             fields=(_flag("busy", 0, "a command is queued or runs"),
                     _flag("done", 1, "the last CTRL write was refused, or every command "
                                      "queued has completed (cleared by the next CTRL write)"),
                     _flag("error", 2, "the last CTRL write was refused, or ERRLOG holds the "
                                      "failure of a queued command"),
                     _flag("engine", 3, "a GEMM runs (START to its end)"),
                     _flag("transfer", 4, "a stream transfer runs (a load, READ_C or UPDATE)"),
                     _flag("rejected", 5, "the last CTRL write was refused, with the code in "
                                          "[15:8]; it was not queued"),
                     Field("code", 8, 8, "the code of the refused CTRL write, else 5 while "
                                         "ERRLOG holds a failure (0 none; see "
                                         "Errors)", enum=ErrorCode, inline=False))),
    Register("M", Reg.M, Access.RW, "rows of A and C", width=16),
    Register("N", Reg.N, Access.RW, "columns of B and C", width=16),
    Register("K", Reg.K, Access.RW, "the reduction length", width=16),
    Register("OPTIONS", Reg.OPTIONS, Access.RW, "the options of the next command",
             fields=_OPTIONS_FIELDS),
    Register("CYCLES", Reg.CYCLES, Access.R, "clock cycles of the last GEMM, start to done"),
    Register("ACTIVE", Reg.ACTIVE, Access.R, "cycles of the last GEMM in which a row of A "
                                             "entered the array"),
    Register("A_WORDS", Reg.A_WORDS, Access.R, "words per A bank: `M * ceil(K / rows)` must "
                                               "not exceed it", reset=None),
    Register("B_BYTES", Reg.B_BYTES, Access.R, "bytes of B: `K * N` must not exceed it",
             reset=None),
    Register("ACC_WORDS", Reg.ACC_WORDS, Access.R, "accumulator words: `M * ceil(N / cols)` "
                                                   "must not exceed it", reset=None),
    Register("LR", Reg.LR, Access.RW, f"UPDATE: learning rate, {_UPDATE_SCALAR}", width=16,
             unit="update"),
    Register("MOMENTUM", Reg.MOMENTUM, Access.RW, f"UPDATE: momentum factor, {_UPDATE_SCALAR}",
             width=16, unit="update"),
    Register("WEIGHT_DECAY", Reg.WEIGHT_DECAY, Access.RW,
             f"UPDATE: weight decay, {_UPDATE_SCALAR}", width=16, unit="update"),
    Register("SEED", Reg.SEED, Access.RW, "UPDATE: the xorshift32 state it starts from "
                                          "(nonzero)", unit="update"),
    Register("LENGTH", Reg.LENGTH, Access.RW, "UPDATE: elements, 1 to `2**24 - 1`",
             unit="update"),
    Register("RNG_STATE", Reg.RNG_STATE, Access.R, "the update generator's state after the "
                                                   "last element: the SEED that continues "
                                                   "the stream", reset=1, unit="update"),
    Register("CLOCK", Reg.CLOCK, Access.R, "a free-running cycle counter", unit="stamps"),
    Register("FIRST_IN", Reg.FIRST_IN, Access.R, "CLOCK at the first beat of the latest load "
                                                 "frame", unit="stamps"),
    Register("LAST_OUT", Reg.LAST_OUT, Access.R, "CLOCK at the last beat of the latest READ_C "
                                                 "frame", unit="stamps"),
    Register("BUILD", Reg.BUILD, Access.R, "more of what the build holds", reset=None,
             fields=(Field("beat_bytes", 0, 8, "bytes per AXI4-Stream beat (the stream width "
                                               "over 8)"),
                     Field("buffers", 8, 4, "buffers of each kind: 2 (double buffering) or 1"),
                     Field("queue", 12, 4, "commands the queue holds, 0 to 15 (0: a command "
                                               "starts at once or is refused)"))),
    Register("QUEUE", Reg.QUEUE, Access.R, "the command queue", reset=0,
             fields=(Field("pending", 0, 8, "commands queued or running"),
                     Field("errors", 8, 8, "entries in ERRLOG"),
                     Field("completed", 16, 16, "commands completed with every one before "
                                                "them, modulo 2**16: the ticket of the "
                                                "oldest pending command"))),
    Register("ERRLOG", Reg.ERRLOG, Access.R, "the oldest failure of a queued command; "
             "reading it removes it", reset=0,
             fields=(Field("ticket", 0, 16, "the command's ticket: the number of commands "
                                            "queued before it since reset, modulo 2**16"),
                     Field("code", 16, 8, "its error code", enum=ErrorCode, inline=False),
                     _flag("valid", 31, "an entry was there (0: the log is empty)"))),
)

_BY_NAME = {r.name: r for r in REGISTERS}
_BY_ADDR = {r.addr: r for r in REGISTERS}
assert [r.name for r in REGISTERS] == [r.name for r in Reg], "REGISTERS and Reg differ"
assert all(r.addr == Reg[r.name] for r in REGISTERS)

ID, CONFIG, CTRL, STATUS, OPTIONS = (_BY_NAME[n] for n in
                                     ("ID", "CONFIG", "CTRL", "STATUS", "OPTIONS"))


def register(reg):
    """The :class:`Register` named ``reg`` (``"OPTIONS"``), at address ``reg`` (``Reg.M``,
    ``0x10``), or ``reg`` itself."""
    if isinstance(reg, Register):
        return reg
    if isinstance(reg, str):
        try:
            return _BY_NAME[reg.upper()]
        except KeyError:
            raise KeyError(f"No register {reg!r}") from None
    try:
        return _BY_ADDR[int(reg)]
    except (KeyError, TypeError, ValueError):
        raise KeyError(f"No register at {reg!r}") from None


@dataclass(frozen=True)
class RegisterMap:
    """The whole description, as :func:`to_json` writes it and :func:`from_json` reads it."""
    version: int
    id_value: int
    registers: tuple
    ctrl: dict = _field(default_factory=dict)
    errors: dict = _field(default_factory=dict)
    out_formats: dict = _field(default_factory=dict)


def _members(e):
    return {m.name: (int(m), describe(m)) for m in e}


#: The description as one object.
REGMAP = RegisterMap(REGMAP_VERSION, ID_VALUE, REGISTERS, _members(Ctrl), _members(ErrorCode),
                     _members(OutFmt))


# Register words ----------------------------------------------------------------------------------

def pack(reg, **fields):
    """The word of register ``reg`` with these field values (missing fields are 0).

    >>> hex(pack("OPTIONS", chunk_log2=6, out_fmt=OutFmt.E4M3))
    '0x20060'

    Raises ``KeyError`` for a field the register does not have and ``ValueError`` for a value
    that does not fit it (or, for an enum field, is not one of its members).
    """
    reg = register(reg)
    if not reg.fields:
        raise TypeError(f"{reg.name} has no fields: it holds one number")
    word = 0
    for name, value in fields.items():
        f = reg.field(name)
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int) or not 0 <= value < 1 << f.width:
            raise ValueError(f"{reg.name}.{name} is {f.width} bits wide: {value!r} does not "
                             f"fit")
        if value in f.invalid:
            raise ValueError(f"{reg.name}.{name} must be one of "
                             f"{', '.join(f'{int(m)} ({m.name})' for m in f.enum)}, not "
                             f"{value}")
        word |= value << f.lsb
    return word


def replace(reg, word, **fields):
    """``word`` of register ``reg`` with these fields set to new values, the others kept.

    >>> hex(replace("OPTIONS", 0x20060, out_fmt=OutFmt.ACC))
    '0x60'
    """
    reg = register(reg)
    for name in fields:
        word &= ~reg.field(name).mask
    return word | pack(reg, **fields)


def unpack(reg, word):
    """``{field: value}`` of register ``reg``'s ``word``; the value of an enum field is its
    member where it is one."""
    reg = register(reg)
    word = int(word)
    if not 0 <= word < 1 << 32:
        raise ValueError(f"A register word is 32 bits, not {word:#x}")
    if not reg.fields:
        raise TypeError(f"{reg.name} has no fields: it holds one number")
    out = {}
    for f in reg.fields:
        value = (word & f.mask) >> f.lsb
        if f.enum is not None and value not in f.invalid:
            value = f.enum(value)
        out[f.name] = value
    return out


def accepts(reg, word):
    """Whether a whole-word write of ``word`` to ``reg`` is taken (OKAY): the register can be
    written and the word sets no bit outside :attr:`Register.write_mask` and no invalid value
    of an enum field."""
    reg = register(reg)
    word = int(word)
    if not reg.writable or word & ~reg.write_mask or not 0 <= word < 1 << 32:
        return False
    if reg.access is Access.W:
        return True
    return all((word & f.mask) >> f.lsb not in f.invalid for f in reg.fields)


# Renderings --------------------------------------------------------------------------------------

def _hex(value, digits=2):
    return f"0x{value:0{digits}X}"


def _reset_text(reg):
    if reg.reset is None:
        return "build" if reg.readable else "-"
    return f"`{_hex(reg.reset, 1)}`"


def _field_doc(f, reg):
    doc = f.doc
    if f.enum is not None and f.inline:
        values = ", ".join(f"{int(m)} {m.name} ({describe(m)})" for m in f.enum)
        refused = ", ".join(map(str, f.invalid))
        doc += f": {values}"
        if refused and reg.writable:
            doc += f"; {refused} is refused" if len(f.invalid) == 1 else \
                f"; {refused} are refused"
    return doc


def _reserved_doc(reg):
    if reg.access is Access.W:
        return f"must be 0 (else error {int(ErrorCode.BAD_CTRL)}, BAD_CTRL)"
    if reg.access is Access.RW:
        return "reserved: 0 (a write that sets one is refused)"
    return "reserved: reads 0"


def _register_table():
    lines = ["| offset | name | access | reset | bits | contents |",
             "|---|---|---|---|---|---|"]
    for r in REGISTERS:
        bits = "fields below" if r.fields else f"`{_bits(r.width - 1, 0)}`"
        doc = r.doc + {"update": " (weight-update unit)", "stamps": " (time stamps)",
                       None: ""}[r.unit]
        lines.append(f"| {_hex(r.addr)} | {r.name} | {r.access.value} | {_reset_text(r)} | "
                     f"{bits} | {doc} |")
    return lines


def _field_tables():
    out = []
    for r in REGISTERS:
        if not r.fields:
            continue
        rows = [(f.msb, f.bits, f"`{f.name}`", _field_doc(f, r)) for f in r.fields]
        rows += [(msb, _bits(msb, lsb), "", _reserved_doc(r)) for msb, lsb in r.reserved()]
        out += ["", f"**{r.name}** ({_hex(r.addr)}, {r.access.value}):", "",
                "| bits | field | meaning |", "|---|---|---|"]
        out += [f"| `{bits}` | {name} | {doc} |" for _, bits, name, doc in
                sorted(rows, key=lambda row: row[0])]
    return out


def _error_table():
    lines = ["| code | name | meaning |", "|---|---|---|"]
    rows = {int(e): (e.name, describe(e)) for e in ErrorCode if e is not ErrorCode.NONE}
    rows.update({code: ("", why) for code, why in UNUSED_ERRORS.items()})
    lines += [f"| {code} | {name} | {doc} |" for code, (name, doc) in sorted(rows.items())]
    return lines


def markdown_sections():
    """``{marker: text}``: the Markdown of each generated part of docs/host-interface.md,
    ``regs`` (the register table and the field tables) and ``errors`` (the error codes)."""
    return {"regs": "\n".join(_register_table() + _field_tables()) + "\n",
            "errors": "\n".join(_error_table()) + "\n"}


def markdown():
    """Every generated part, each between its marker comments, as
    :func:`replace_sections` puts them in the document."""
    return "\n".join(f"<!-- {name}:begin -->\n{text}<!-- {name}:end -->\n"
                     for name, text in markdown_sections().items())


def replace_sections(text, sections=None):
    """``text`` (a Markdown document) with what lies between each ``<!-- NAME:begin -->`` and
    ``<!-- NAME:end -->`` replaced by ``sections[NAME]`` (:func:`markdown_sections` by
    default). Raises ``ValueError`` if a pair of markers is missing."""
    sections = markdown_sections() if sections is None else sections
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)",
                             re.DOTALL)
        match = pattern.search(text)
        if not match:
            raise ValueError(f"The document has no <!-- {name}:begin --> ... "
                             f"<!-- {name}:end --> markers")
        text = text[:match.start()] + match[1] + body + match[2] + text[match.end():]
    return text


def _c_comment(text):
    return text.replace("`", "").replace("*/", "* /")


def c_header(generator="fp8accel regs --c-header"):
    """A C header of the register map: addresses, field shifts and masks (in place: a field
    is ``(word & MASK) >> SHIFT``), CTRL bits, error codes, output formats, the version and
    the ID value. ``generator`` is named in its first comment."""
    u = "u"
    lines = [
        f"/* fp8accel register map, version {REGMAP_VERSION}.",
        f" * Generated by `{generator}` from fp8accel.hw.regs; do not edit.",
        " * Ref: docs/host-interface.md. A field is (word & MASK) >> SHIFT. */",
        "#ifndef FP8ACCEL_REGS_H",
        "#define FP8ACCEL_REGS_H",
        "",
        f"#define FP8ACCEL_REGMAP_VERSION {REGMAP_VERSION}{u}",
        f"#define FP8ACCEL_ID_VALUE {_hex(ID_VALUE, 8)}{u}",
        "",
        "/* Register byte addresses. */",
    ]
    lines += [f"#define FP8ACCEL_REG_{r.name} {_hex(r.addr)}{u}  /* {r.access.value}: "
              f"{_c_comment(r.doc)} */" for r in REGISTERS]
    lines += ["", "/* The bits of each register that mean something, and its fields. */"]
    for r in REGISTERS:
        lines.append(f"#define FP8ACCEL_{r.name}_MASK {_hex(r.mask, 8)}{u}")
        for f in r.fields:
            stem = f"FP8ACCEL_{r.name}_{f.name.upper()}"
            lines += [f"#define {stem}_SHIFT {f.lsb}{u}  /* {_c_comment(f.doc)} */",
                      f"#define {stem}_MASK {_hex(f.mask, 8)}{u}"]
    lines += ["", "/* CTRL: write exactly one of these to start an action. */"]
    lines += [f"#define FP8ACCEL_CTRL_{c.name} {_hex(int(c))}{u}  /* {_c_comment(describe(c))}"
              f" */" for c in Ctrl]
    lines += ["", "/* STATUS[15:8]: error codes. */"]
    lines += [f"#define FP8ACCEL_ERR_{e.name} {int(e)}{u}  /* {_c_comment(describe(e))} */"
              for e in ErrorCode]
    lines += ["", "/* OPTIONS[17:16]: READ_C output formats. */"]
    lines += [f"#define FP8ACCEL_OUT_FMT_{o.name} {int(o)}{u}  /* {_c_comment(describe(o))} */"
              for o in OutFmt]
    lines += ["", "#endif /* FP8ACCEL_REGS_H */", ""]
    return "\n".join(lines)


def to_json(regmap=REGMAP):
    """The description as a JSON-ready ``dict``."""
    return {
        "version": regmap.version,
        "id_value": regmap.id_value,
        "registers": [{
            "name": r.name, "addr": r.addr, "access": r.access.value, "doc": r.doc,
            "width": r.width, "reset": r.reset, "unit": r.unit, "mask": r.mask,
            "write_mask": r.write_mask,
            "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "doc": f.doc,
                        "enum": None if f.enum is None else f.enum.__name__,
                        "inline": f.inline} for f in r.fields],
        } for r in regmap.registers],
        "ctrl": {k: {"value": v, "doc": d} for k, (v, d) in regmap.ctrl.items()},
        "errors": {k: {"value": v, "doc": d} for k, (v, d) in regmap.errors.items()},
        "out_formats": {k: {"value": v, "doc": d} for k, (v, d) in regmap.out_formats.items()},
    }


def from_json(obj):
    """The :class:`RegisterMap` of a :func:`to_json` ``dict``."""
    def members(d):
        return {k: (v["value"], v["doc"]) for k, v in d.items()}

    registers = tuple(
        Register(r["name"], r["addr"], Access(r["access"]), r["doc"],
                 fields=tuple(Field(f["name"], f["lsb"], f["width"], f["doc"],
                                    None if f["enum"] is None else _ENUMS[f["enum"]],
                                    f["inline"]) for f in r["fields"]),
                 width=r["width"], reset=r["reset"], unit=r["unit"])
        for r in obj["registers"])
    return RegisterMap(obj["version"], obj["id_value"], registers, members(obj["ctrl"]),
                       members(obj["errors"]), members(obj["out_formats"]))


def text_map():
    """A short human-readable map: one line a register, one a field."""
    lines = [f"fp8accel register map, version {REGMAP_VERSION} (ID {_hex(ID_VALUE, 8)})"]
    for r in REGISTERS:
        bits = "" if r.fields else f" {_bits(r.width - 1, 0)}"
        lines.append(f"{_hex(r.addr)} {r.name:<12} {r.access.value:<2}{bits:>8}  "
                     f"{r.doc.replace('`', '')}")
        for f in r.fields:
            lines.append(f"{'':20}{f.bits:>8}  {f.name}: {_field_doc(f, r).replace('`', '')}")
    return "\n".join(lines) + "\n"

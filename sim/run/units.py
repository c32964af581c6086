"""cocotb testbenches, and the unit descriptions they share with the pytest side.

A :class:`UnitSpec` names one configuration of an arithmetic unit with JSON-ready options. The
pytest side builds the component from it (:meth:`UnitSpec.build`) and converts it to Verilog;
the cocotb side, running inside the simulator, only needs the port list and the golden model
(:meth:`UnitSpec.golden`), so it never elaborates the design again.
"""

import json
from dataclasses import dataclass, field

__all__ = ["UNIT_KINDS", "UnitSpec"]

#: Every unit kind with its options and their defaults (``None``: required).
UNIT_KINDS = {
    "multiplier": {"a_fmt": None, "b_fmt": None, "out_fmt": None},
    "adder":      {"fmt": None, "rounding": "rne", "rbits": 16},
    "fma":        {"fmt": None, "rounding": "rne", "rbits": 16},
    "convert":    {"in_fmt": None, "out_fmt": None, "rounding": "rne", "saturate": True,
                   "rbits": 16},
}

#: Result port and the option naming its format, by unit kind.
_OUTPUTS = {
    "multiplier": ("p", "out_fmt"),
    "adder": ("s", "fmt"),
    "fma": ("r", "fmt"),
    "convert": ("r", "out_fmt"),
}


@dataclass(frozen=True)
class UnitSpec:
    """One configuration of a fixed-latency arithmetic unit.

    Parameters
    ----------
    kind : str
        ``"multiplier"``, ``"adder"``, ``"fma"`` or ``"convert"``.
    options : dict
        Constructor options by name (formats as preset names, rounding as its value); missing
        ones take the defaults of :data:`UNIT_KINDS`.
    """
    kind: str
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        from fp8accel.hw.fp.format import check_rbits, format_by_name, rounding_by_name

        if self.kind not in UNIT_KINDS:
            raise ValueError(f"Unknown unit kind {self.kind!r}; expected one of "
                             f"{', '.join(UNIT_KINDS)}")
        defaults = UNIT_KINDS[self.kind]
        unknown = set(self.options) - set(defaults)
        if unknown:
            raise ValueError(f"Option {', '.join(sorted(unknown))} does not apply to the "
                             f"{self.kind}; it takes {', '.join(defaults)}")
        opts = {**defaults, **self.options}
        missing = [k for k, v in opts.items() if v is None]
        if missing:
            raise ValueError(f"The {self.kind} needs option {', '.join(missing)}")
        for k in opts:
            if k.endswith("fmt"):
                opts[k] = format_by_name(opts[k]).name.lower()
        if "rounding" in opts:
            opts["rounding"] = rounding_by_name(opts["rounding"]).value
        if "rbits" in opts:
            check_rbits(opts["rbits"])
        if "saturate" in opts and not isinstance(opts["saturate"], bool):
            raise TypeError(f"saturate must be a bool, not {opts['saturate']!r}")
        object.__setattr__(self, "options", opts)

    def __hash__(self):
        return hash((self.kind, tuple(sorted(self.options.items()))))

    @property
    def name(self):
        """A short name usable in file names, e.g. ``adder-dlfloat16-sr``."""
        o = self.options
        if self.kind == "multiplier":
            parts = [o["a_fmt"], o["b_fmt"], o["out_fmt"]]
        elif self.kind == "convert":
            parts = [o["in_fmt"], o["out_fmt"], o["rounding"]]
            if not o["saturate"]:
                parts.append("nosat")
        else:
            parts = [o["fmt"], o["rounding"]]
        if o.get("rounding") == "sr" and o["rbits"] != 16:
            parts.append(f"r{o['rbits']}")
        return "-".join([self.kind, *parts])

    def fmt(self, key):
        from fp8accel.hw.fp.format import format_by_name
        return format_by_name(self.options[key])

    @property
    def stochastic(self):
        return self.options.get("rounding") == "sr"

    @property
    def inputs(self):
        """``[(port name, format or None)]`` of the operand ports; ``None`` marks ``rnd``."""
        o = self.options
        if self.kind == "multiplier":
            ports = [("a", self.fmt("a_fmt")), ("b", self.fmt("b_fmt"))]
        elif self.kind == "adder":
            ports = [("a", self.fmt("fmt")), ("b", self.fmt("fmt"))]
        elif self.kind == "fma":
            ports = [("a", self.fmt("fmt")), ("b", self.fmt("fmt")), ("c", self.fmt("fmt"))]
        else:
            ports = [("a", self.fmt("in_fmt"))]
        if o.get("rounding") == "sr":
            ports.append(("rnd", None))
        return ports

    @property
    def output(self):
        """``(port name, format)`` of the result port."""
        port, key = _OUTPUTS[self.kind]
        return port, self.fmt(key)

    def build(self):
        """Construct the component (its ``hw.fp`` module is imported only now)."""
        from fp8accel.hw.fp.format import Rounding
        o = self.options
        if self.kind == "multiplier":
            from fp8accel.hw.fp.multiplier import FPMultiplier
            return FPMultiplier(self.fmt("a_fmt"), self.fmt("b_fmt"), self.fmt("out_fmt"))
        if self.kind == "adder":
            from fp8accel.hw.fp.adder import FPAdder
            return FPAdder(self.fmt("fmt"), Rounding(o["rounding"]), rbits=o["rbits"])
        if self.kind == "fma":
            from fp8accel.hw.fp.fma import FPFMA
            return FPFMA(self.fmt("fmt"), Rounding(o["rounding"]), rbits=o["rbits"])
        from fp8accel.hw.fp.convert import FPConvert
        return FPConvert(self.fmt("in_fmt"), self.fmt("out_fmt"), Rounding(o["rounding"]),
                         o["saturate"], rbits=o["rbits"])

    def golden(self, ops):
        """Expected result codes for ``ops`` (port name -> integer array), from
        :mod:`sim.golden`."""
        from fp8accel.sim import golden
        o = self.options
        rnd = ops.get("rnd")
        if self.kind == "multiplier":
            return golden.mul(ops["a"], ops["b"], o["a_fmt"], o["b_fmt"], o["out_fmt"])
        if self.kind == "adder":
            return golden.add(ops["a"], ops["b"], o["fmt"], o["rounding"], rnd, o["rbits"])
        if self.kind == "fma":
            return golden.fma(ops["a"], ops["b"], ops["c"], o["fmt"], o["rounding"], rnd,
                              o["rbits"])
        return golden.convert(ops["a"], o["in_fmt"], o["out_fmt"], o["rounding"],
                              o["saturate"], rnd, o["rbits"])

    def to_json(self):
        return {"kind": self.kind, "options": dict(self.options)}

    @classmethod
    def from_json(cls, obj):
        if isinstance(obj, str):
            obj = json.loads(obj)
        return cls(obj["kind"], obj.get("options", {}))

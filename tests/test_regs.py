"""The register map described once (``fp8accel.hw.regs``): the names ``hw.top`` has always
exported keep their values, the description agrees with the RTL after reset, the host's
pack/unpack helpers agree with the ``lib.data`` layouts, docs/host-interface.md holds the
rendered tables, and ``fp8accel regs`` writes a C header that compiles and JSON that reads
back as the description."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from fp8accel.hw import regs
from fp8accel.hw.gemm.engine import Error
from fp8accel.hw.regs import OPTIONS, STATUS, Access, OutFmt
from fp8accel.hw.top import (
    CARRY_IN,
    CARRY_OUT,
    ID_VALUE,
    OPTIONS_MASK,
    READ_ONLY,
    REG_MASK,
    UPDATE_RNE,
    Accelerator,
    Ctrl,
    Reg,
    TopError,
)
from fp8accel.sim.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "host-interface.md"
#: The command that rewrites the doc's tables.
REGENERATE = "fp8accel regs --write-doc docs/host-interface.md"


# The names of hw.top, as they were written out by hand before the description -------------------

def test_addresses_are_those_of_register_map_version_5():
    assert {r.name: int(r) for r in Reg} == {
        "ID": 0x00, "CONFIG": 0x04, "CTRL": 0x08, "STATUS": 0x0C, "M": 0x10, "N": 0x14,
        "K": 0x18, "OPTIONS": 0x1C, "CYCLES": 0x20, "ACTIVE": 0x24, "A_WORDS": 0x28,
        "B_BYTES": 0x2C, "ACC_WORDS": 0x30, "LR": 0x34, "MOMENTUM": 0x38,
        "WEIGHT_DECAY": 0x3C, "SEED": 0x40, "LENGTH": 0x44, "RNG_STATE": 0x48, "CLOCK": 0x4C,
        "FIRST_IN": 0x50, "LAST_OUT": 0x54, "BUILD": 0x58, "QUEUE": 0x5C, "ERRLOG": 0x60}
    assert ID_VALUE == 0xF8AC0005 == regs.ID_MAGIC << 16 | regs.REGMAP_VERSION


def test_masks_and_read_only_registers_are_unchanged():
    assert REG_MASK == {
        Reg.CTRL: 0xFFFF_FFFF, Reg.M: 0xFFFF, Reg.N: 0xFFFF, Reg.K: 0xFFFF,
        Reg.LR: 0xFFFF, Reg.MOMENTUM: 0xFFFF, Reg.WEIGHT_DECAY: 0xFFFF,
        Reg.SEED: 0xFFFF_FFFF, Reg.LENGTH: 0xFFFF_FFFF, Reg.OPTIONS: 0x1F_FBF3}
    assert OPTIONS_MASK == 0x1F_FBF3
    assert set(READ_ONLY) == {Reg.ID, Reg.CONFIG, Reg.STATUS, Reg.CYCLES, Reg.ACTIVE,
                              Reg.A_WORDS, Reg.B_BYTES, Reg.ACC_WORDS, Reg.RNG_STATE,
                              Reg.CLOCK, Reg.FIRST_IN, Reg.LAST_OUT, Reg.BUILD, Reg.QUEUE,
                              Reg.ERRLOG}
    assert (UPDATE_RNE, CARRY_OUT, CARRY_IN) == (1 << 13, 1 << 14, 1 << 15)


def test_codes_are_unchanged_and_agree_with_the_engine():
    assert {c.name: int(c) for c in Ctrl} == {"START": 1, "LOAD_A": 2, "LOAD_B": 4,
                                              "LOAD_C": 8, "READ_C": 16, "UPDATE": 32}
    assert {e.name: int(e) for e in TopError} == {
        "NONE": 0, "ZERO_DIM": 1, "TOO_LARGE": 2, "BUSY": 4, "FRAME": 5, "BAD_CTRL": 6,
        "BAD_SEED": 7, "NO_UPDATE": 8, "NO_FP8_OUT": 9}
    for name in ("NONE", "ZERO_DIM", "TOO_LARGE", "BUSY"):
        assert TopError[name] == getattr(Error, name)
    assert {o.name: int(o) for o in OutFmt} == {"ACC": 0, "E5M2": 1, "E4M3": 2}


def test_every_register_is_described_once():
    assert [r.addr for r in regs.REGISTERS] == sorted({r.addr for r in regs.REGISTERS})
    for r in regs.REGISTERS:
        assert regs.register(r.name) is r is regs.register(r.addr)
        assert r.doc and all(f.doc for f in r.fields)
    assert [f.name for f in regs.CTRL.fields] == [c.name.lower() for c in Ctrl]
    assert OPTIONS.field("out_fmt").invalid == (3,)


# Field helpers -----------------------------------------------------------------------------------

def test_pack_agrees_with_the_layout():
    fields = {"a_e4m3": 1, "chunk_log2": 6, "trans_b": 1, "carry_in": 1,
              "out_fmt": OutFmt.E4M3}
    word = regs.pack("OPTIONS", **fields)
    assert word == 1 | 6 << 4 | 1 << 11 | CARRY_IN | 2 << 16
    assert word == OPTIONS.layout.const(fields).as_value().value
    assert regs.unpack(OPTIONS, word) == {**{f.name: 0 for f in OPTIONS.fields}, **fields}
    assert regs.unpack(STATUS, 0x0622) == {"busy": 0, "done": 1, "error": 0, "engine": 0,
                                           "transfer": 0, "rejected": 1,
                                           "code": TopError.BAD_CTRL}
    assert regs.replace(OPTIONS, word, out_fmt=OutFmt.ACC, c_buf=1) == word & ~(3 << 16) | 1 << 20


@pytest.mark.parametrize("fields, message", [
    ({"chunk_log2": 16}, "OPTIONS.chunk_log2 is 4 bits wide: 16 does not fit"),
    ({"out_fmt": 3}, "OPTIONS.out_fmt must be one of 0 (ACC), 1 (E5M2), 2 (E4M3), not 3"),
    ({"chunk": 4}, "OPTIONS has no field 'chunk'"),
])
def test_pack_refuses_what_does_not_fit(fields, message):
    with pytest.raises((ValueError, KeyError), match=message.replace("(", r"\(")
                       .replace(")", r"\)")):
        regs.pack("OPTIONS", **fields)


@pytest.mark.parametrize("reg, word, taken", [
    (Reg.M, 0xFFFF, True), (Reg.M, 0x10005, False), (Reg.OPTIONS, 2 << 16, True),
    (Reg.OPTIONS, 3 << 16, False), (Reg.OPTIONS, 1 << 2, False), (Reg.OPTIONS, 1 << 21, False),
    (Reg.CTRL, 1 << 31, True), (Reg.STATUS, 0, False), (Reg.LENGTH, 0xFFFF_FFFF, True),
])
def test_accepts_is_the_decoders_rule(reg, word, taken):
    assert regs.accepts(reg, word) is taken


# The RTL after reset -----------------------------------------------------------------------------

async def _read(ctx, dut, addr):
    ctx.set(dut.s_axil.araddr, addr)
    ctx.set(dut.s_axil.arvalid, 1)
    ctx.set(dut.s_axil.rready, 1)
    for _ in range(10):
        _, _, arready, rvalid, rdata, rresp = await ctx.tick().sample(
            dut.s_axil.arready, dut.s_axil.rvalid, dut.s_axil.rdata, dut.s_axil.rresp)
        if arready:
            ctx.set(dut.s_axil.arvalid, 0)
        if rvalid:
            ctx.set(dut.s_axil.rready, 0)
            return rdata, rresp
    raise AssertionError(f"no read response for {addr:#04x}")


def test_registers_read_their_reset_values_and_config_its_fields():
    dut = Accelerator(1, 2, a_depth=16, b_depth=32, acc_depth=8)
    seen = {}

    async def bench(ctx):
        for r in regs.REGISTERS:
            seen[r.name] = await _read(ctx, dut, r.addr)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for r in regs.REGISTERS:
        value, resp = seen[r.name]
        assert resp == (0 if r.readable else 2), r.name
        if r.reset is not None and r.name != "CLOCK":
            assert value == r.reset, r.name
    assert regs.unpack("CONFIG", seen["CONFIG"][0]) == {
        "rows": 1, "cols": 2, "acc_exp": 6, "acc_man": 9, "rbits_m1": 15, "no_update": 0,
        "no_fp8_out": 0, "no_stamps": 0}
    assert [seen[n][0] for n in ("A_WORDS", "B_BYTES", "ACC_WORDS")] == [16, 32, 8]


def test_rows_beyond_the_config_field_are_refused():
    with pytest.raises(ValueError, match="rows must be at most 255"):
        Accelerator(256, 1)


# The documentation -------------------------------------------------------------------------------

def test_doc_tables_are_the_rendering():
    text = DOC.read_text()
    assert regs.replace_sections(text) == text, \
        f"{DOC.relative_to(ROOT)} differs from hw.regs; regenerate its tables with: {REGENERATE}"


def test_write_doc_replaces_only_the_tables(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nProse.\n\n<!-- regs:begin -->\nold\n<!-- regs:end -->\n\nMore "
                   "prose.\n\n<!-- errors:begin -->\n<!-- errors:end -->\nEnd.\n")
    assert main(["regs", "--write-doc", str(doc)]) == 0
    sections = regs.markdown_sections()
    assert doc.read_text() == (f"# Title\n\nProse.\n\n<!-- regs:begin -->\n{sections['regs']}"
                               f"<!-- regs:end -->\n\nMore prose.\n\n<!-- errors:begin -->\n"
                               f"{sections['errors']}<!-- errors:end -->\nEnd.\n")
    doc.write_text("no markers\n")
    assert main(["regs", "--write-doc", str(doc)]) == 2
    assert "no <!-- regs:begin -->" in capsys.readouterr().err
    assert doc.read_text() == "no markers\n"


def test_markdown_prints_every_section_between_its_markers(capsys):
    assert main(["regs", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == regs.markdown()
    assert "<!-- regs:begin -->" in out and "| 9 | NO_FP8_OUT |" in out


def test_the_short_map_names_every_register(capsys):
    assert main(["regs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fp8accel register map, version 5 (ID 0xF8AC0005)")
    assert all(f"0x{r.addr:02X} {r.name}" in out for r in regs.REGISTERS)


# The C header and JSON ---------------------------------------------------------------------------

def test_json_reads_back_as_the_description(tmp_path):
    out = tmp_path / "regs.json"
    assert main(["regs", "--json", str(out)]) == 0
    obj = json.loads(out.read_text())
    assert regs.from_json(obj) == regs.REGMAP
    assert obj["id_value"] == ID_VALUE and obj["registers"][7]["write_mask"] == OPTIONS_MASK


_PROGRAM = """\
#include <stdio.h>
#include "regs.h"
int main(void) {
    printf("%u %u %u %u %u %u %u %u %u %u\\n", FP8ACCEL_REGMAP_VERSION, FP8ACCEL_ID_VALUE,
           FP8ACCEL_REG_OPTIONS, FP8ACCEL_REG_LAST_OUT, FP8ACCEL_OPTIONS_OUT_FMT_SHIFT,
           FP8ACCEL_OPTIONS_OUT_FMT_MASK, FP8ACCEL_OPTIONS_MASK, FP8ACCEL_CTRL_READ_C,
           FP8ACCEL_ERR_NO_FP8_OUT, FP8ACCEL_OUT_FMT_E4M3);
    printf("%u %u\\n", FP8ACCEL_STATUS_CODE_SHIFT, FP8ACCEL_STATUS_CODE_MASK);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")
def test_c_header_compiles_and_holds_the_description(tmp_path):
    header = tmp_path / "regs.h"
    assert main(["regs", "--c-header", str(header)]) == 0
    (tmp_path / "twice.c").write_text('#include "regs.h"\n#include "regs.h"\n')
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-fsyntax-only", "twice.c"],
                   cwd=tmp_path, check=True)
    (tmp_path / "main.c").write_text(_PROGRAM)
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-o", "main", "main.c"],
                   cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True,
                         check=True).stdout.split()
    out_fmt = OPTIONS.field("out_fmt")
    assert list(map(int, out)) == [
        5, ID_VALUE, Reg.OPTIONS, Reg.LAST_OUT, out_fmt.lsb, out_fmt.mask, OPTIONS_MASK,
        Ctrl.READ_C, TopError.NO_FP8_OUT, OutFmt.E4M3, 8, 0xFF00]


def test_outputs_are_checked_before_anything_is_written(tmp_path, capsys):
    json_out = tmp_path / "regs.json"
    assert main(["regs", "--json", str(json_out), "--c-header",
                 str(tmp_path / "missing" / "regs.h")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not json_out.exists()
    assert main(["regs", "--c-header", str(tmp_path / "regs.c")]) == 2
    assert "--c-header must name a .h file" in capsys.readouterr().err


def test_access_kinds():
    assert {r.name for r in regs.REGISTERS if r.access is Access.W} == {"CTRL"}
    assert {r.name for r in regs.REGISTERS if r.unit == "update"} == {
        "LR", "MOMENTUM", "WEIGHT_DECAY", "SEED", "LENGTH", "RNG_STATE"}

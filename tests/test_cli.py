"""The command line: help for every subcommand, one-line errors, the verification summary."""

import pytest

from fp8accel.sim.cli import build_parser, main


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert main([name, "--help"]) == 0
        assert "usage: fp8accel " + name in capsys.readouterr().out


def test_verify_writes_verilog_and_passes(tmp_path, capsys):
    assert main(["verify", "--out", str(tmp_path), "--count", "200"]) == 0
    out = capsys.readouterr().out
    assert "All results match the golden model bit for bit." in out
    assert len(list(tmp_path.glob("*.v"))) == 6
    assert "module fp_add_dlfloat16_rne" in (tmp_path / "fp_add_dlfloat16_rne.v").read_text()


def test_verify_bad_count_is_one_line(capsys):
    assert main(["verify", "--count", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "fp8accel verify: error: --count must be from 1 to 10000000, not 0"

"""Bad input to every ``fp8accel`` subcommand: one line ``fp8accel <cmd>: error: ...``, exit
status 2, before any work starts, and no output file (nor a temporary one) left behind.

Every case below fails in its argument checks; none builds a simulator, runs a tool or
trains. The tests run as root, for whom permission bits do not stop a write, so the paths
that cannot be written are under a regular file (``file.txt/x``) or in ``/proc``, where no
one can create a file.
"""

import json
import os
import stat

import numpy as np
import pytest

from fp8accel.sim.cli import main
from fp8accel.sim.cli.util import (CliError, check_int, check_output_dir, check_output_file,
    load_codes)
from fp8accel.sim.files import atomic_output, write_text

#: A message ending with this is compared up to it (the rest comes from NumPy or the kernel).
ANY = "..."


@pytest.fixture
def dirs(tmp_path):
    """``{d}``: the input files; ``{o}``: an empty directory for the outputs."""
    d, o = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    o.mkdir()
    np.save(d / "a.npy", np.arange(12, dtype=np.uint8).reshape(3, 4))
    np.save(d / "b.npy", np.zeros((4, 2), np.uint8))
    np.save(d / "b5.npy", np.zeros((5, 2), np.uint8))
    np.save(d / "c.npy", np.zeros((3, 2), np.uint16))
    np.save(d / "c22.npy", np.zeros((2, 2), np.uint16))
    np.save(d / "c_big.npy", np.full((3, 2), 70000, np.int32))
    np.save(d / "w.npy", np.zeros((3, 7), np.uint16))
    np.save(d / "short.npy", np.zeros(5, np.uint16))
    np.save(d / "empty_vec.npy", np.zeros(0, np.uint16))
    np.save(d / "nan.npy", np.full((3, 4), np.nan))
    np.save(d / "inf.npy", np.full((3, 7), np.inf, np.float32))
    np.save(d / "complex.npy", np.zeros((3, 4), np.complex128))
    np.save(d / "bool.npy", np.zeros((3, 4), bool))
    np.save(d / "object.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    np.save(d / "rank1.npy", np.zeros(4, np.uint8))
    np.save(d / "rank3.npy", np.zeros((2, 3, 4), np.uint8))
    np.save(d / "zero_rows.npy", np.zeros((0, 4), np.uint8))
    np.save(d / "too_big.npy", np.full((3, 4), 300, np.int16))
    np.save(d / "negative.npy", np.full((3, 4), -1, np.int8))
    (d / "text.npy").write_text("1 2 3\n4 5 6\n")
    (d / "blank.npy").write_bytes(b"")
    np.savez(d / "archive", a=np.zeros((3, 4), np.uint8))
    os.rename(d / "archive.npz", d / "archive.npy")
    whole = (d / "a.npy").read_bytes()
    (d / "truncated.npy").write_bytes(whole[:-5])
    (d / "file.txt").write_text("a regular file, not a directory\n")
    (d / "dir.npy").mkdir()
    return d, o


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else None)
                  for p in root.rglob("*"))


def _expect_one_line_error(capsys, tmp_path, argv, command, message):
    """Run ``argv``; assert exit status 2, exactly one line ``fp8accel <command>: error:
    <message>`` on stderr, nothing on stdout, and no file created or changed."""
    before = _tree(tmp_path)
    try:
        status = main(argv)
    except SystemExit as exc:          # argparse's own errors (unknown or missing arguments)
        status = exc.code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, captured
    assert len(lines) == 1, captured.err
    want = f"fp8accel {command}: error: {message}"
    if want.endswith(ANY):
        assert lines[0].startswith(want[:-len(ANY)]), lines[0]
    else:
        assert lines[0] == want
    assert captured.out == ""
    assert _tree(tmp_path) == before, "the command left a file behind"


def _cases(command, base, table):
    return [pytest.param(command, base, args, message, id=f"{command}-{i}-{message[:40]}")
            for i, (args, message) in enumerate(table)]


# The table ---------------------------------------------------------------------------------------

GEMM = ["gemm", "--out", "{o}/c.npy", "--build-dir", "{o}/build"]
GEMM_RANDOM = [*GEMM, "--random", "3", "2", "4"]
GEMM_FILES = [*GEMM, "--a", "{d}/a.npy", "--b", "{d}/b.npy"]

_A_CODES = "must hold integer codes (uint8), not"
_A_FILES = [
    ("none.npy", "cannot read A from {d}/none.npy: No such file or directory"),
    ("", "cannot read A from {d}/: Is a directory"),
    ("text.npy", "cannot read A from {d}/text.npy: it is not a NumPy .npy file"),
    ("blank.npy", "cannot read A from {d}/blank.npy: it is not a NumPy .npy file"),
    ("archive.npy",
     "cannot read A from {d}/archive.npy: it is not a NumPy .npy file (an .npz archive)"),
    ("truncated.npy", "cannot read A from {d}/truncated.npy: it is a damaged .npy file (" + ANY),
    ("object.npy", f"A ({{d}}/object.npy) {_A_CODES} object"),
    ("nan.npy", f"A ({{d}}/nan.npy) {_A_CODES} float64"),
    ("complex.npy", f"A ({{d}}/complex.npy) {_A_CODES} complex128"),
    ("bool.npy", f"A ({{d}}/bool.npy) {_A_CODES} bool"),
    ("rank1.npy", "A ({d}/rank1.npy) must be a 2-D array, not shape (4,)"),
    ("rank3.npy", "A ({d}/rank3.npy) must be a 2-D array, not shape (2, 3, 4)"),
    ("zero_rows.npy", "A ({d}/zero_rows.npy) is empty (shape (0, 4))"),
    ("too_big.npy", "A ({d}/too_big.npy) holds values outside 0..255"),
    ("negative.npy", "A ({d}/negative.npy) holds values outside 0..255"),
]

_PROC = "no file can be created in /proc ("

CASES = _cases("gemm", GEMM_FILES, [
    *[(["--a", "{d}/" + name], message) for name, message in _A_FILES],
    (["--b", "{d}/b5.npy"],
     "A is 3x4 and B is 5x2 (after --transpose-*): they do not form a matrix product"),
    (["--c", "{d}/c22.npy"], "C has shape (2, 2), expected (3, 2)"),
    (["--c", "{d}/c_big.npy"], "C ({d}/c_big.npy) holds values outside 0..65535"),
    (["--c", "{d}/nan.npy"], "C ({d}/nan.npy) must hold integer codes (uint16), not float64"),
    (["--out", "{o}/c.txt"], "--out must name a .npy file, not '{o}/c.txt'"),
    (["--out", "{o}/no/c.npy"], "cannot write {o}/no/c.npy: {o}/no is not a directory"),
    (["--out", "{d}/file.txt/c.npy"],
     "cannot write {d}/file.txt/c.npy: {d}/file.txt is not a directory"),
    (["--out", "/proc/c.npy"], f"cannot write /proc/c.npy: {_PROC}" + ANY),
    (["--out", "{d}/dir.npy"], "cannot write {d}/dir.npy: it is a directory"),
    (["--json", "{o}/no/r.json"], "cannot write {o}/no/r.json: {o}/no is not a directory"),
    (["--json", "/proc/r.json"], f"cannot write /proc/r.json: {_PROC}" + ANY),
    (["--json", "{o}/c.npy"], "--out and --json name the same file"),
    (["--build-dir", "{d}/file.txt/build"],
     "cannot write {d}/file.txt/build: {d}/file.txt is not a directory"),
    (["--build-dir", "/proc/fp8accel/build"], f"cannot write /proc/fp8accel/build: {_PROC}" + ANY),
    (["--a-fmt", "e3m4"], "--a-fmt must be one of e5m2, e4m3, not 'e3m4'"),
    (["--rounding", "sr"], "--rounding must be one of rne, rna, not 'sr'"),
    (["--out-fmt", "binary16"], "--out-fmt must be one of dlfloat16, e5m2, e4m3, not 'binary16'"),
    (["--chunk", "0"], "--chunk must be a power of two from 1 to 32768 or 'none', not '0'"),
    (["--chunk", "65536"],
     "--chunk must be a power of two from 1 to 32768 or 'none', not '65536'"),
    (["--rows", "0"], "--rows must be from 1 to 255 (the CONFIG register's field), not 0"),
    (["--cols", "-2"], "--cols must be from 1 to 255 (the CONFIG register's field), not -2"),
    (["--rows", "4096"], "--rows must be from 1 to 255 (the CONFIG register's field), not 4096"),
    (["--rows", "two"], "--rows must be a positive integer, not 'two'"),
    (["--baud", "9600"], "--baud and --clock-mhz apply to --device only"),
]) + _cases("gemm", GEMM_RANDOM, [
    (["--seed", "-5"], "--seed must be non-negative, not -5"),
    (["--seed", "1.5"], "--seed must be a non-negative integer, not '1.5'"),
    (["--random", "0", "2", "4"], "--random M must be from 1 to 65535, not 0"),
    (["--random", "3", "-2", "4"], "--random N must be from 1 to 65535, not -2"),
    (["--random", "3", "2", "100000"], "--random K must be from 1 to 65535, not 100000"),
    (["--a", "{d}/a.npy"], "--random generates A and B: give either --random or --a and --b"),
    (["--device", "socket://localhost:1", "--clock-mhz", "inf"],
     "--clock-mhz must be a positive number, not 'inf'"),
    (["--device", "socket://localhost:1", "--clock-mhz", "nan"],
     "--clock-mhz must be a positive number, not 'nan'"),
    (["--device", "socket://localhost:1", "--baud", "0"], "--baud must be at least 1, not 0"),
    (["--device", "socket://localhost:1", "--rows", "2"],
     "--rows and --cols build a simulated top; a board reports its own array (leave them "
     "out with --device)"),
    (["--device", "socket://localhost:1", "--stream-width", "16"],
     "--stream-width builds a simulated top; a board's ports are its own (leave it out with "
     "--device)"),
    (["--stream-width", "24"], "--stream-width must be one of 16, 32, 64, 128, 256, not 24"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])

UPDATE = ["update", "--w", "{d}/w.npy", "--g", "{d}/w.npy", "--v", "{d}/w.npy", "--lr", "0.01",
          "--momentum", "0.9", "--weight-decay", "0", "--seed", "1", "--out-w", "{o}/w1.npy",
          "--out-v", "{o}/v1.npy", "--build-dir", "{o}/build"]
_SEED32 = "--seed must be from 1 to 2**32 - 1 (xorshift32 never leaves 0)"
CASES += _cases("update", UPDATE, [
    (["--w", "{d}/none.npy"], "cannot read W from {d}/none.npy: No such file or directory"),
    (["--g", "{d}/text.npy"], "cannot read G from {d}/text.npy: it is not a NumPy .npy file"),
    (["--v", "{d}/inf.npy"], "V ({d}/inf.npy) must hold DLFLOAT16 codes (uint16), not float32"),
    (["--v", "{d}/complex.npy"],
     "V ({d}/complex.npy) must hold DLFLOAT16 codes (uint16), not complex128"),
    (["--w", "{d}/empty_vec.npy"], "W ({d}/empty_vec.npy) is empty (shape (0,))"),
    (["--w", "{d}/c_big.npy"], "W ({d}/c_big.npy) holds values outside 0..65535"),
    (["--g", "{d}/short.npy"], "W, G and V must have one shape, not (3, 7), (5,), (3, 7)"),
    (["--lr", "nan"], "--lr must be finite, not 'nan'"),
    (["--momentum=-inf"], "--momentum must be finite, not '-inf'"),
    (["--lr", "fast"], "--lr must be a decimal number, not 'fast'"),
    (["--weight-decay", "1e30"], "--weight-decay 1e30 is beyond the largest DLFLOAT16 value"),
    (["--seed", "0"], f"{_SEED32}, not 0"),
    (["--seed", "-5"], f"{_SEED32}, not -5"),
    (["--seed", str(1 << 32)], f"{_SEED32}, not {1 << 32}"),
    (["--rounding", "rna"], "--rounding must be one of sr, rne, not 'rna'"),
    (["--out-w", "{o}/w1.txt"], "--out-w must name a .npy file, not '{o}/w1.txt'"),
    (["--out-v", "{o}/w1.npy"], "--out-w and --out-v name the same file"),
    (["--json", "{o}/v1.npy"], "--out-v and --json name the same file"),
    (["--out-w", "{o}/no/w1.npy"], "cannot write {o}/no/w1.npy: {o}/no is not a directory"),
    (["--out-v", "/proc/v1.npy"], f"cannot write /proc/v1.npy: {_PROC}" + ANY),
    (["--build-dir", "{d}/file.txt/b"],
     "cannot write {d}/file.txt/b: {d}/file.txt is not a directory"),
])

DEMO = ["demo", "--build-dir", "{o}/build"]
CASES += _cases("demo", DEMO, [
    (["--rows", "0"], "--rows must be from 1 to 255 (the CONFIG register's field), not 0"),
    (["--cols", "300"], "--cols must be from 1 to 255 (the CONFIG register's field), not 300"),
    (["--batch", "0"], "--batch must be from 1 to 4096, not 0"),
    (["--d-in", "-1"], "--d-in must be from 1 to 4096, not -1"),
    (["--d-out", "1000000"], "--d-out must be from 1 to 4096, not 1000000"),
    (["--d-out", "many"], "--d-out must be a positive integer, not 'many'"),
    (["--chunk", "12"], "--chunk must be a power of two from 1 to 32768 or 'none', not '12'"),
    (["--seed", "0"], f"{_SEED32}, not 0"),
    (["--lr", "nan"], "--lr must be a number between 0 and 1, not nan"),
    (["--lr", "2"], "--lr must be a number between 0 and 1, not 2"),
    (["--build-dir", "{d}/file.txt/b"],
     "cannot write {d}/file.txt/b: {d}/file.txt is not a directory"),
    (["--build-dir", "/proc/fp8accel"], f"cannot write /proc/fp8accel: {_PROC}" + ANY),
    (["--sim", "xsim"], "--sim must be one of verilator, icarus, not 'xsim'"),
])

TRAIN = ["train", "--model", "mlp", "--config", "fp8", "--json", "{o}/r.json"]
CASES += _cases("train", TRAIN, [
    (["--seed", "-5"], "--seed must be non-negative, not -5"),
    (["--seed", "x"], "--seed must be a non-negative integer, not 'x'"),
    (["--epochs", "0"], "--epochs must be at least 1, not 0"),
    (["--epochs", "-3"], "--epochs must be at least 1, not -3"),
    (["--json", "{o}/no/r.json"], "cannot write {o}/no/r.json: {o}/no is not a directory"),
    (["--json", "{d}/file.txt/r.json"],
     "cannot write {d}/file.txt/r.json: {d}/file.txt is not a directory"),
    (["--json", "/proc/r.json"], f"cannot write /proc/r.json: {_PROC}" + ANY),
    (["--json", "{o}"], "cannot write {o}: it is a directory"),
    (["--model", "rnn"], "--model must be one of mlp, cnn, not 'rnn'"),
]) + _cases("train", ["train", "--all", "--models", "mlp", "--out", "{o}/results"], [
    (["--seeds", "0"], "--seeds must be at least 1, not 0"),
    (["--models", "mlp,rnn"], "unknown model 'rnn' in --models (choose from mlp, cnn)"),
    (["--out", "{d}/file.txt/results"],
     "cannot write {d}/file.txt/results: {d}/file.txt is not a directory"),
    (["--out", "{d}/file.txt"], "cannot write {d}/file.txt: it is not a directory"),
    (["--out", "/proc/results"], f"cannot write /proc/results: {_PROC}" + ANY),
])

STUDY = ["study", "accumulation", "--out", "{o}/results", "--max-log2", "4", "--trials", "1"]
CASES += _cases("study", STUDY, [
    (["--max-log2", "3"], "--max-log2 must be from 4 to 16, not 3"),
    (["--max-log2", "17"], "--max-log2 must be from 4 to 16, not 17"),
    (["--trials", "0"], "--trials must be at least 1, not 0"),
    (["--trials", "1000", "--max-log2", "16"],
     "--trials 1000 is too many for dot products of length 2**16: at most 256 (or a smaller "
     "--max-log2)"),
    (["--seed", "-5"], "--seed must be non-negative, not -5"),
    (["--out", "{d}/file.txt/results"],
     "cannot write {d}/file.txt/results: {d}/file.txt is not a directory"),
    (["--out", "/proc/results"], f"cannot write /proc/results: {_PROC}" + ANY),
])

BENCH = ["bench", "golden", "--no-reference", "--json", "{o}/b.json"]
CASES += _cases("bench", BENCH, [
    (["--repeat", "0"], "--repeat must be at least 1, not 0"),
    (["--repeat", "many"], "--repeat must be a positive integer, not 'many'"),
    (["--json", "{o}/no/b.json"], "cannot write {o}/no/b.json: {o}/no is not a directory"),
    (["--json", "/proc/b.json"], f"cannot write /proc/b.json: {_PROC}" + ANY),
])

VERIFY = ["verify", "--out", "{o}/verilog", "--count", "10"]
CASES += _cases("verify", VERIFY, [
    (["--count", "0"], "--count must be from 1 to 10000000, not 0"),
    (["--count", "1000000000"], "--count must be from 1 to 10000000, not 1000000000"),
    (["--seed", "-5"], "--seed must be non-negative, not -5"),
    (["--out", "{d}/file.txt/verilog"],
     "cannot write {d}/file.txt/verilog: {d}/file.txt is not a directory"),
    (["--out", "/proc/verilog"], f"cannot write /proc/verilog: {_PROC}" + ANY),
])

SYNTH = ["synth", "multiplier", "--target", "ecp5-25k", "--json", "{o}/s.json"]
SWEEP = ["synth", "sweep", "--of", "pe", "--target", "ecp5-25k", "--json", "{o}/s.json"]
CASES += _cases("synth", SYNTH, [
    (["--seeds", "0"], "--seeds must be at least 1, not 0"),
    (["--seeds", "two"], "--seeds must be a positive integer, not 'two'"),
    (["--jobs", "-1"], "--jobs must be at least 1, not -1"),
    (["--freq", "inf"], "--freq must be a positive number, not 'inf'"),
    (["--freq", "-100"], "--freq must be a positive number, not '-100'"),
    (["--router", "router3"], "--router must be one of router1, router2, not 'router3'"),
    (["--a-fmt", "e9m9"], "Unknown format 'e9m9'" + ANY),
    (["--json", "{o}/no/s.json"], "cannot write {o}/no/s.json: {o}/no is not a directory"),
    (["--json", "/proc/s.json"], f"cannot write /proc/s.json: {_PROC}" + ANY),
    (["--keep", "{d}/file.txt/keep"],
     "cannot write {d}/file.txt/keep: {d}/file.txt is not a directory"),
]) + _cases("synth", ["synth", "array", "--target", "ecp5-25k", "--json", "{o}/s.json"], [
    (["--rows", "0"], "--rows must be from 1 to 64, not 0"),
    (["--cols", "65"], "--cols must be from 1 to 64, not 65"),
]) + _cases("synth", ["synth", "update", "--target", "ecp5-25k", "--json", "{o}/s.json"], [
    (["--rbits", "0"], "--rbits must be at least 1, not 0"),
]) + _cases("synth", SWEEP, [
    (["--markdown", "{o}/no/s.md"], "cannot write {o}/no/s.md: {o}/no is not a directory"),
    (["--markdown", "{o}/s.json"], "--json and --markdown name the same file"),
    (["--plot", "{o}/s.txt"], "--plot must name a file ending with " + ANY),
    (["--plot", "/proc/s.png"], f"cannot write /proc/s.png: {_PROC}" + ANY),
    (["--of", "cpu"], "--of must be one of top, array, pe, not 'cpu'"),
    (["--sizes", "0x2", "--of", "array"],
     "Array size '0x2': rows and columns must be 1 to 64"),
    (["--of", "top", "--formats", "fp8/dlfloat16,binary16/binary32"],
     "The accelerator top takes FP8 operands and accumulates in chunks; binary16/binary32 is "
     "for the pe and array units"),
    (["--seeds", "0"], "--seeds must be at least 1, not 0"),
]) + _cases("synth", ["synth"], [
    (["divider", "--target", "ecp5-25k"], "unknown unit 'divider'" + ANY),
    (["pe", "--target", "ecp5-12k"], "unknown target 'ecp5-12k'" + ANY),
])

BUILD = ["build", "--board", "icebreaker", "--build-dir", "{o}/boards", "--json", "{o}/b.json"]
CASES += _cases("build", BUILD, [
    (["--board", "de10"], "unknown board 'de10'" + ANY),
    (["--baud", "0"], "--baud must be at least 1, not 0"),
    (["--baud", "fast"], "--baud must be a positive integer, not 'fast'"),
    (["--baud", "5000000"], "5000000 baud is too fast for a 12 MHz clock" + ANY),
    (["--seed", "0"], "--seed must be at least 1, not 0"),
    (["--rows", "0"], "--rows must be from 1 to 255 (the CONFIG register's field), not 0"),
    (["--json", "{o}/no/b.json"], "cannot write {o}/no/b.json: {o}/no is not a directory"),
    (["--json", "/proc/b.json"], f"cannot write /proc/b.json: {_PROC}" + ANY),
    (["--build-dir", "{d}/file.txt/boards"],
     "cannot write {d}/file.txt/boards: {d}/file.txt is not a directory"),
])

CASES += _cases("cache", ["cache"], [
    (["--max", "3"], "unrecognized arguments: --max 3"),
])

CASES += _cases("regs", ["regs"], [
    (["--c-header", "/proc/r.h"], f"cannot write /proc/r.h: {_PROC}" + ANY),
    (["--json", "{o}/no/r.json"], "cannot write {o}/no/r.json: {o}/no is not a directory"),
])

VERILOG = ["verilog", "top", "--rows", "2", "--cols", "2", "-o", "{o}/accel.v"]
CASES += _cases("verilog", VERILOG, [
    (["--stream-width", "48"], "--stream-width must be one of 16, 32, 64, 128, 256, not 48"),
    (["--stream-width", "wide"], "--stream-width must be an integer, not 'wide'"),
    (["--rows", "0"], "--rows must be from 1 to 255 (the CONFIG register's field), not 0"),
    (["--a-depth", "0"], "--a-depth must be at least 1, not 0"),
    (["-o", "/proc/accel.v"], f"cannot write /proc/accel.v: {_PROC}" + ANY),
])


@pytest.mark.parametrize("command, base, args, message", CASES)
def test_bad_input_is_one_line_and_leaves_no_file(dirs, tmp_path, capsys, command, base, args,
                                                  message):
    d, o = dirs
    argv = [a.format(d=d, o=o) for a in [*base, *args]]
    _expect_one_line_error(capsys, tmp_path, argv, command, message.format(d=d, o=o))


def test_every_subcommand_has_cases():
    from fp8accel.sim.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {case.values[0] for case in CASES}


# The shared checks on their own ------------------------------------------------------------------

def test_check_int_names_the_flag():
    assert check_int("7", "--n") == 7
    assert check_int(np.int64(3), "--n", 1) == 3
    for value, message in ((-1, "--n must be non-negative, not -1"),
                           ("1e3", "--n must be a non-negative integer, not '1e3'"),
                           (True, "--n must be a non-negative integer, not True"),
                           (2.0, "--n must be a non-negative integer, not 2.0")):
        with pytest.raises(CliError) as info:
            check_int(value, "--n")
        assert str(info.value) == message
    with pytest.raises(CliError, match=r"^--k must be at least 2 \(why\), not 1$"):
        check_int(1, "--k", 2, why="why")


def test_valid_codes_load_unchanged(tmp_path):
    """What the loader accepted before it still accepts, as the same codes."""
    codes = np.arange(12).reshape(3, 4)
    for dtype in (np.uint8, np.int64, ">u2", np.int16):
        np.save(tmp_path / "x.npy", codes.astype(dtype))
        got = load_codes(tmp_path / "x.npy", "A", np.uint8, ndim=2)
        assert got.dtype == np.uint8 and np.array_equal(got, codes)
    np.save(tmp_path / "f.npy", np.asfortranarray(codes.astype(np.uint16)))
    assert np.array_equal(load_codes(tmp_path / "f.npy", "C", np.uint16), codes)
    np.save(tmp_path / "s.npy", np.uint16(7))          # a 0-D array: one element, any rank
    assert load_codes(tmp_path / "s.npy", "W", np.uint16).shape == ()


def test_output_checks_accept_new_and_nested(tmp_path):
    assert check_output_file(str(tmp_path / "r.json"), "--json") == tmp_path / "r.json"
    (tmp_path / "old.json").write_text("{}")
    check_output_file(str(tmp_path / "old.json"), "--json")          # replaced, not refused
    check_output_dir(str(tmp_path / "a" / "b" / "c"))                  # created by the command
    check_output_file("/dev/null", "--json")                          # written in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_atomic_output_leaves_the_old_file_on_failure(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("old")
    os.chmod(out, 0o640)
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and not tmp.exists()
            tmp.write_text("half")
            raise RuntimeError("the writer failed")
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]
    write_text(out, "new")
    assert out.read_text() == "new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640                  # the old file's mode
    assert os.listdir(tmp_path) == ["r.json"]
    (tmp_path / "plain.txt").write_text("")
    write_text(tmp_path / "new.txt", "")
    assert (tmp_path / "new.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def test_atomic_output_replaces_a_link_target(tmp_path):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "r.json"
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    write_text(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and target.read_text() == "new"


def test_a_good_run_writes_through_a_temporary_file(tmp_path, capsys):
    """The study is fast at --max-log2 4: its three files appear, nothing else."""
    out = tmp_path / "results"
    assert main(["study", "accumulation", "--out", str(out), "--max-log2", "4",
                 "--trials", "2"]) == 0
    assert sorted(os.listdir(out)) == ["accumulation.json", "accumulation.md",
                                       "accumulation.png"]
    assert json.loads((out / "accumulation.json").read_text())["trials"] == 2
    assert capsys.readouterr().err == ""

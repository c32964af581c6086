"""``fp8accel gemm``, ``demo`` and ``update``: one-line errors for bad arguments and files, and
real runs on Verilator and Icarus checked against fp8accel.sim.golden. ``@pytest.mark.slow``:
256^3 GEMMs and the demo."""

import json

import numpy as np
import pytest

from conftest import BUILD, simulators
from fp8accel.sim.cli import main


def _one_line_error(capsys, argv, message, command="gemm"):
    try:
        status = main(argv)
    except SystemExit as exc:          # argparse's own errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fp8accel {command}: error: {message}", err


@pytest.mark.parametrize("args, message", [
    (["--random", "2", "2", "2", "--chunk", "3"],
     "--chunk must be a power of two from 1 to 32768 or 'none', not '3'"),
    (["--random", "2", "2", "2", "--a-fmt", "e3m4"],
     "--a-fmt must be one of e5m2, e4m3, not 'e3m4'"),
    (["--random", "2", "2", "2", "--out-fmt", "binary16"],
     "--out-fmt must be one of dlfloat16, e5m2, e4m3, not 'binary16'"),
    (["--random", "2", "2", "2", "--rounding", "sr"],
     "--rounding must be one of rne, rna, not 'sr'"),
    (["--random", "2", "0", "2"], "--random N must be from 1 to 65535, not 0"),
    (["--random", "2", "2", "2", "--rows", "0"],
     "--rows must be from 1 to 255 (the CONFIG register's field), not 0"),
    (["--random", "2", "2", "2", "--sim", "xsim"],
     "--sim must be one of verilator, icarus, not 'xsim'"),
    ([], "give the operands with --a and --b, or --random M N K"),
    (["--random", "2", "2", "2", "--a", "x.npy"],
     "--random generates A and B: give either --random or --a and --b"),
    (["--random", "2", "2"], "argument --random: expected 3 arguments"),
])
def test_gemm_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    _one_line_error(capsys, ["gemm", "--out", str(tmp_path / "c.npy"), *args], message)


def test_gemm_bad_files_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "c.npy")
    a, b, f = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "f.npy"
    np.save(a, np.zeros((3, 4), np.uint8))
    np.save(b, np.zeros((5, 2), np.uint8))
    np.save(f, np.zeros((4, 2), np.float32))
    _one_line_error(capsys, ["gemm", "--a", str(a), "--b", str(b), "--out", out],
                    "A is 3x4 and B is 5x2 (after --transpose-*): they do not form a matrix "
                    "product")
    _one_line_error(capsys, ["gemm", "--a", str(a), "--b", str(f), "--out", out],
                    f"B ({f}) must hold integer codes (uint8), not float32")
    missing = tmp_path / "none.npy"
    assert main(["gemm", "--a", str(missing), "--b", str(b), "--out", out]) == 2
    assert capsys.readouterr().err.startswith(f"fp8accel gemm: error: cannot read A from "
                                              f"{missing}: ")
    _one_line_error(capsys, ["gemm", "--random", "2", "2", "2", "--out", "c.txt"],
                    "--out must name a .npy file, not 'c.txt'")
    _one_line_error(capsys, ["gemm", "--random", "2", "2", "2", "--out", out,
                             "--json", str(tmp_path / "no" / "r.json")],
                    f"cannot write {tmp_path / 'no' / 'r.json'}: {tmp_path / 'no'} is not a directory")


def test_demo_bad_arguments_are_one_line(capsys):
    _one_line_error(capsys, ["demo", "--batch", "0"], "--batch must be from 1 to 4096, not 0",
                    "demo")
    _one_line_error(capsys, ["demo", "--chunk", "12"],
                    "--chunk must be a power of two from 1 to 32768 or 'none', not '12'", "demo")


@pytest.mark.icarus
def test_gemm_random_check_on_icarus(tmp_path, capsys):
    out, report = tmp_path / "c.npy", tmp_path / "r.json"
    argv = ["gemm", "--random", "5", "3", "7", "--seed", "3", "--rows", "2", "--cols", "2",
            "--sim", "icarus", "--transpose-b", "--chunk", "4", "--a-fmt", "e4m3",
            "--out-fmt", "e4m3", "--check", "--json", str(report), "--out", str(out),
            "--build-dir", str(tmp_path / "build"), "--buffers", "8", "16", "8"]
    assert main(argv) == 0, capsys.readouterr()
    captured = capsys.readouterr()
    assert "Check: every result matches sim.golden.gemm bit for bit." in captured.out
    assert "building the 2x2 top with icarus" in captured.err
    got = np.load(out)
    assert got.dtype == np.uint8 and got.shape == (5, 3)
    r = json.loads(report.read_text())
    assert (r["m"], r["n"], r["k"], r["rows"], r["cols"], r["sim"]) == (5, 3, 7, 2, 2, "icarus")
    assert r["check"] == {"mismatches": 0, "results": 15}
    # The buffers hold less than the GEMM: it runs in tiles (M, N and K).
    assert r["depths"] == [8, 16, 8] and r["commands"] > 1, r
    assert r["cycles"] > r["active"] >= 5 * 2 * 4
    assert r["utilization"] == pytest.approx(5 * 3 * 7 / (4 * r["cycles"]))
    assert r["cycles_total"] > r["cycles"]
    assert r["end_to_end_utilization"] == pytest.approx(5 * 3 * 7 / (4 * r["cycles_total"]))
    assert r["options"]["chunk"] == 4 and r["options"]["transpose_b"] is True
    assert r["build_s"] >= 0 and r["sim_s"] > 0


@pytest.mark.icarus
def test_gemm_without_out_checks_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """--out is optional: without it --check and the report still run, the summary says C was
    not written, and no .npy appears outside the build directory."""
    monkeypatch.chdir(tmp_path)
    argv = ["gemm", "--random", "3", "2", "5", "--seed", "4", "--rows", "2", "--cols", "2",
            "--sim", "icarus", "--check", "--json", "r.json", "--build-dir", "build"]
    assert main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "C (3x2, dlfloat16) not written (no --out): " in out
    assert "Check: every result matches sim.golden.gemm bit for bit." in out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["out"] is None and r["check"] == {"mismatches": 0, "results": 6}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "r.json"]


def _update_files(tmp_path, shape=(3, 7), seed=5):
    from fp8accel.sim import golden
    rng = np.random.default_rng(seed)
    files = {}
    for name, scale in (("w", 1.0), ("g", 1e-2), ("v", 1e-3)):
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], golden.encode(rng.standard_normal(shape) * scale,
                                           "dlfloat16").astype(np.uint16))
    return files


@pytest.mark.parametrize("sim", simulators())
def test_update_cli_check(tmp_path, capsys, sim):
    """fp8accel update on both simulators: the results are those of sim.golden.sgd_update
    (checked here too, not only by --check), the report has the state that continues the
    stream."""
    from fp8accel.sim import golden
    files = _update_files(tmp_path)
    report = tmp_path / "r.json"
    argv = ["update", "--w", str(files["w"]), "--g", str(files["g"]), "--v", str(files["v"]),
            "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "1e-4", "--seed", "77",
            "--out-w", str(tmp_path / "w1.npy"), "--out-v", str(tmp_path / "v1.npy"),
            "--sim", sim, "--check", "--json", str(report),
            "--build-dir", str(BUILD if sim == "verilator" else tmp_path / "build")]
    assert main(argv) == 0, capsys.readouterr()
    assert "Check: every result matches sim.golden.sgd_update bit for bit." in \
        capsys.readouterr().out
    r = json.loads(report.read_text())
    w, g, v = (np.load(files[k]) for k in "wgv")
    codes = [int(golden.encode(np.array(x), "dlfloat16")) for x in (0.01, 0.9, 1e-4)]
    assert [r["lr_code"], r["momentum_code"], r["weight_decay_code"]] == codes
    ew, ev = golden.sgd_update(w, g, v, *codes, 77)
    w1, v1 = np.load(tmp_path / "w1.npy"), np.load(tmp_path / "v1.npy")
    assert w1.dtype == np.uint16 and w1.shape == (3, 7)
    assert np.array_equal(w1, ew) and np.array_equal(v1, ev)
    assert r["check"] == {"mismatches": 0, "results": 42}
    assert r["rng_state"] == int(golden.xorshift32(77, 3 * 21)[-1])
    assert r["cycles"] >= 3 * 21


def test_update_bad_arguments_are_one_line(tmp_path, capsys):
    files = _update_files(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros(5, np.uint16))
    np.save(tmp_path / "f.npy", np.zeros((3, 7), np.float32))
    base = {"--w": str(files["w"]), "--g": str(files["g"]), "--v": str(files["v"]),
            "--lr": "0.01", "--momentum": "0.9", "--weight-decay": "0", "--seed": "1",
            "--out-w": str(tmp_path / "w1.npy"), "--out-v": str(tmp_path / "v1.npy")}

    def argv(**changes):
        opts = {**base, **{"--" + k.replace("_", "-"): v for k, v in changes.items()}}
        return ["update", *[x for kv in opts.items() for x in kv]]

    for changes, message in (
            ({"seed": "0"}, "--seed must be from 1 to 2**32 - 1 (xorshift32 never leaves 0), "
                            "not 0"),
            ({"lr": "fast"}, "--lr must be a decimal number, not 'fast'"),
            ({"momentum": "inf"}, "--momentum must be finite, not 'inf'"),
            ({"weight_decay": "1e30"}, "--weight-decay 1e30 is beyond the largest DLFLOAT16 "
                                       "value"),
            ({"rounding": "rna"}, "--rounding must be one of sr, rne, not 'rna'"),
            ({"g": str(tmp_path / "short.npy")},
             "W, G and V must have one shape, not (3, 7), (5,), (3, 7)"),
            ({"v": str(tmp_path / "f.npy")},
             f"V ({tmp_path / 'f.npy'}) must hold DLFLOAT16 codes (uint16), not float32"),
            ({"out_w": "w1.txt"}, "--out-w must name a .npy file, not 'w1.txt'"),
            ({"out_v": base["--out-w"]}, "--out-w and --out-v name the same file")):
        _one_line_error(capsys, argv(**changes), message, "update")


@pytest.mark.verilator
@pytest.mark.slow
def test_gemm_256_cubed_on_8x8(tmp_path):
    """The utilization goal on the 8x8 array (and what a regression of this size costs)."""
    report = tmp_path / "r.json"
    assert main(["gemm", "--random", "256", "256", "256", "--rows", "8", "--cols", "8",
                 "--a-fmt", "e4m3", "--check", "--json", str(report),
                 "--out", str(tmp_path / "c.npy")]) == 0
    r = json.loads(report.read_text())
    print(f"256^3 on 8x8: {r['cycles']} cycles, utilization {r['utilization']:.3f}, build "
          f"{r['build_s']:.1f} s, simulation {r['sim_s']:.1f} s")
    assert r["utilization"] > 0.9


@pytest.mark.verilator
@pytest.mark.slow
def test_gemm_256_cubed_on_4x4(tmp_path):
    report = tmp_path / "r.json"
    assert main(["gemm", "--random", "256", "256", "256", "--a-fmt", "e4m3", "--check",
                 "--json", str(report), "--out", str(tmp_path / "c.npy")]) == 0
    r = json.loads(report.read_text())
    print(f"256^3 on 4x4: {r['cycles']} cycles, utilization {r['utilization']:.3f}, build "
          f"{r['build_s']:.1f} s, simulation {r['sim_s']:.1f} s")
    assert r["utilization"] > 0.9


@pytest.mark.verilator
@pytest.mark.slow
def test_demo(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Every result matches sim.golden.gemm and sim.golden.sgd_update bit for bit." in out
    assert "stochastic rounding (on the RTL)               0 " in out
    print(out)



@pytest.mark.verilator
@pytest.mark.slow
def test_gemm_1024_cubed_on_the_ulx3s_buffers(tmp_path):
    """A GEMM far larger than the buffers (the ULX3S build's: 2048 A words, 16 KiB of B, 2048
    accumulator words on the 8x8 array), tiled by the host driver and double-buffered,
    bit-exact; its wall time is printed."""
    import time
    report = tmp_path / "r.json"
    start = time.monotonic()
    assert main(["gemm", "--random", "1024", "1024", "1024", "--rows", "8", "--cols", "8",
                 "--buffers", "2048", "16384", "2048", "--check", "--json", str(report)]) == 0
    r = json.loads(report.read_text())
    print(f"1024^3 on 8x8 with the ULX3S buffers: {r['commands']} commands of "
          f"{'x'.join(map(str, r['tile']))}, utilization {r['utilization']:.3f}, end to end "
          f"{r['end_to_end_utilization']:.3f}; build {r['build_s']:.1f} s, simulation "
          f"{r['sim_s']:.1f} s, wall {time.monotonic() - start:.0f} s")
    assert r["check"]["mismatches"] == 0 and r["commands"] > 1

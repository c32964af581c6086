"""``fp8accel study accumulation`` (sim/study.py): the swamping of long DLFLOAT16 sums and
what chunking does about it."""

import json

import numpy as np
import pytest

from fp8accel.sim.experiments import study
from fp8accel.sim.cli import main


def test_errors_against_float64():
    """Positive data, K = 4096: the sequential DLFLOAT16 sum swamps (the terms fall below half
    its ulp long before the end: error of several per cent), chunks of 64 keep it near the
    DLFLOAT16 rounding error, float32 is far better than both."""
    errs = study.accumulation_errors(4096, "positive", 8, np.random.default_rng(0))
    assert errs["sequential DLFLOAT16"] > 0.02
    assert errs["chunk 64"] < errs["sequential DLFLOAT16"] / 5
    assert errs["chunk 64"] < 5e-3
    assert errs["float32"] < errs["chunk 64"] / 100


def test_short_dot_products_are_chunk_independent():
    """K = 16: every chunk length of at least 16 is one chunk, the same sum as sequential."""
    errs = study.accumulation_errors(16, "zero-mean", 8, np.random.default_rng(1))
    assert errs["chunk 16"] == errs["chunk 64"] == errs["chunk 256"] == \
        errs["sequential DLFLOAT16"]


def test_run_study_writes_table_plot_and_best_chunks(tmp_path):
    results, best = study.run_study(tmp_path, max_log2=12, trials=8, seed=2)
    assert set(results) == {"positive", "zero-mean"}
    assert sorted(results["positive"]) == [2 ** e for e in range(4, 13)]
    # At 2**12 on positive data the chunk nearest sqrt(K) = 64 beats 16 and 256 is no worse
    # than sequential: the max(chunk, K / chunk) rule.
    assert best["positive"][4096] == 64
    saved = json.loads((tmp_path / "accumulation.json").read_text())
    assert saved["best_chunk"]["positive"]["4096"] == 64
    assert "| 4096 |" in (tmp_path / "accumulation.md").read_text()
    assert (tmp_path / "accumulation.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_study(tmp_path, capsys):
    assert main(["study", "accumulation", "--out", str(tmp_path), "--max-log2", "6",
                 "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "positive: best chunk per length 2^4:16, 2^5:" in out
    assert (tmp_path / "accumulation.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--max-log2", "17"], "--max-log2 must be from 4 to 16, not 17"),
    (["--max-log2", "3"], "--max-log2 must be from 4 to 16, not 3"),
    (["--trials", "0"], "--trials must be at least 1, not 0"),
])
def test_cli_study_errors_are_one_line(args, message, capsys, tmp_path):
    assert main(["study", "accumulation", "--out", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip() == f"fp8accel study: error: {message}"

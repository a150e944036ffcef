"""The prepared GPU check (benchmarks/gpu_check.sh) runs every step on CPU with tiny shapes (--dry-run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = SHARED_DATA / "tinyshakespeare"


def dry_run(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--data", str(SHAKESPEARE),
         "--work", str(tmp_path / "work"), *args],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def table_row(out: str, name: str) -> list[str]:
    """The numbers of one row of the printed table: wall s, ms/iter, tokens/s, MFU %, val loss."""
    line = next(line for line in out.splitlines() if line.startswith(name))
    return line[len(name):].split()


@pytest.mark.skipif(not (SHAKESPEARE / "input.txt").exists(), reason="Tiny Shakespeare is not in ../shared/data")
def test_gpu_check_dry_run_measures_the_lmexp_rows(tmp_path):
    out = dry_run(tmp_path)
    small = table_row(out, "lmexp gpt_small bf16 compiled")
    recipe = table_row(out, "lmexp nanogpt_shakespeare_char")
    for row in (small, recipe):
        assert float(row[0]) > 0 and float(row[1]) > 0 and float(row[2].replace(",", "")) > 0
        assert row[3] != "-"  # MFU against the measured CPU peak
    assert float(recipe[4]) > 0  # the periodic validation at the last iteration
    assert "no --nanogpt checkout given" in out and "DRY RUN" in out


@pytest.mark.slow  # runs the lmexp rows again, and nanoGPT
@pytest.mark.skipif(not os.environ.get("LMEXP_NANOGPT"),
                    reason="set LMEXP_NANOGPT to a karpathy/nanoGPT checkout to run nanoGPT's part (not in lmexp)")
@pytest.mark.skipif(not (SHAKESPEARE / "input.txt").exists(), reason="Tiny Shakespeare is not in ../shared/data")
def test_gpu_check_dry_run_runs_nanogpt_beside_lmexp(tmp_path):
    out = dry_run(tmp_path, "--nanogpt", os.environ["LMEXP_NANOGPT"])
    nano = table_row(out, "nanoGPT train.py shakespeare_char")
    assert float(nano[1]) > 0 and float(nano[4]) > 0

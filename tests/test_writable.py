"""lmexp/runs/writable.py: an output folder that cannot be written fails in one line, before Hydra
creates anything (Hydra alone ends in an OSError traceback)."""

from __future__ import annotations

import pytest

from conftest import cli


@pytest.mark.parametrize("sweep", [False, True])
def test_a_read_only_output_folder_is_one_line_for_a_run_and_a_sweep(tmp_path, small_disk, sweep):
    read_only = small_disk(1, read_only=True)
    args = ["-m", "seed=1,2"] if sweep else []
    result = cli(*args, "debug=tiny", f"paths.output_root={read_only}", cwd=tmp_path)
    what = "the sweep directory" if sweep else "the run directory"
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write {what} to {read_only}: the file system is read-only. Choose another folder "
        f"(paths.output_root, paths.cache_dir) and run the command again"]

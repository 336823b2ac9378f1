"""scripts/cutlass_headers.sh: unpacks the nvidia-cutlass wheel's headers and fixes CUTLASS 4.2's
stream-K const bug, once, leaving everything else as it was (the probe that uses the headers runs on
the device machine). The wheel here is a zip laid out as the real one, holding the passage of
sm90_tile_scheduler_stream_k.hpp that the fix rewrites."""
from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "cutlass_library/source/include/cutlass/gemm/kernel/sm90_tile_scheduler_stream_k.hpp"
BUGGY = """  bool is_last_tile(WorkTileInfo work_tile_info, uint32_t advance_count = 1) const {
    if (continue_current_work(work_tile_info)) {
      return false;
    }
    return not get_current_work_for_linear_idx(
        unit_iter_start_,
        current_work_linear_idx_ + 1,
        block_id_in_cluster_,
        scheduler_params
    ).is_valid();
  }
"""
OTHER = "cutlass_library/source/include/cutlass/cutlass.h"


def make_wheel(path: Path, header_text: str) -> Path:
    wheel = path / "nvidia_cutlass-4.2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(HEADER, header_text)
        z.writestr(OTHER, "#pragma once\n")
    return wheel


def run(wheel: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "cutlass_headers.sh"), str(wheel), str(out)],
                          capture_output=True, text=True, check=True)


def test_unpacks_and_passes_a_copy(tmp_path: Path):
    proc = run(make_wheel(tmp_path, BUGGY), tmp_path / "h")
    src = Path(proc.stdout.strip())
    assert src == tmp_path / "h" / "wheel" / "cutlass_library" / "source"
    assert (src / "include" / "cutlass" / "cutlass.h").read_text() == "#pragma once\n"
    fixed = (tmp_path / "h" / "wheel" / HEADER).read_text()
    assert "uint32_t unit_iter_start = unit_iter_start_;" in fixed
    assert "get_current_work_for_linear_idx(\n        unit_iter_start,\n" in fixed
    assert "unit_iter_start_,\n" not in fixed  # the member is no longer bound to a non-const reference
    # Everything around the call is as it was.
    assert fixed.replace("    uint32_t unit_iter_start = unit_iter_start_;\n", "").replace(
        "        unit_iter_start,\n", "        unit_iter_start_,\n") == BUGGY


def test_a_header_without_the_bug_is_left_alone(tmp_path: Path):
    text = "// a later CUTLASS, fixed upstream\n"
    run(make_wheel(tmp_path, text), tmp_path / "h")
    assert (tmp_path / "h" / "wheel" / HEADER).read_text() == text

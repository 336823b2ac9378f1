"""The shipped model on the GPU: SQuAD dev v1.1 F1 within 0.1 of the CPU FP32 result in its card."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model_fixtures import DEFAULT_MODEL, REPO, SHARED, cuda_backend_or_skip

pytestmark = pytest.mark.gpu
DEV = SHARED / "squad" / "dev-v1.1.json"


@pytest.mark.parametrize("precision", ["fp16"])
def test_dev_f1_matches_cpu_fp32(tmp_path, precision):
    cuda_backend_or_skip()
    if not DEV.is_file():
        pytest.skip(f"{DEV} is absent (set BERTQA_SHARED_DATA)")
    cpu = json.loads((DEFAULT_MODEL / "eval.json").read_text())["dev_v1.1_full_cpu_fp32"]
    engine = tmp_path / f"minilm_{precision}.engine"
    build = [sys.executable, "builder.py", "--hf", DEFAULT_MODEL, "-o", engine, "--backend", "cuda",
             "-b", "64", "-s", "384"] + (["--fp16"] if precision == "fp16" else [])
    subprocess.run(list(map(str, build)), cwd=REPO, check=True, timeout=600)
    preds = tmp_path / "predictions.json"
    subprocess.run(list(map(str, [sys.executable, "inference.py", "-e", engine, "-sq", DEV, "-o", preds,
                                  "--no-progress"])), cwd=REPO, check=True, timeout=900)
    out = subprocess.run(list(map(str, [sys.executable, "squad/evaluate-v1.1.py", DEV, preds])), cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=300)
    got = json.loads(out.stdout.splitlines()[0])
    print(f"default model on the GPU ({precision}): {got}; CPU fp32: {cpu}")
    assert abs(got["f1"] - cpu["f1"]) <= 0.1 and abs(got["exact_match"] - cpu["exact_match"]) <= 0.2

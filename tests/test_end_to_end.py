"""The shipped model end to end on the CPU: SQuAD dev sample F1 as its model card states, and the notebook."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from model_fixtures import DEFAULT_MODEL, REPO, SHARED

DEV = SHARED / "squad" / "dev-v1.1.json"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (DEFAULT_MODEL / "model.safetensors").is_file(),
                                 reason="the default model is not in this checkout")]


def card_sample_scores() -> dict:
    return json.loads((DEFAULT_MODEL / "eval.json").read_text())["dev_v1.1_sample"]


@pytest.mark.skipif(not DEV.is_file(), reason="../shared/data/squad/dev-v1.1.json is absent")
def test_default_model_reaches_card_f1_on_dev_sample(tmp_path):
    scores = card_sample_scores()
    from helpers.squad_features import first_questions

    sample = tmp_path / "dev-sample.json"
    sample.write_text(json.dumps(first_questions(json.loads(DEV.read_text()), scores["questions"])))
    preds = tmp_path / "predictions.json"
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    import os

    subprocess.run([sys.executable, "inference.py", "--backend", "onnxruntime", "-sq", sample, "-o", preds,
                    "--no-progress"], cwd=REPO, check=True, env={**os.environ, **env_cache}, timeout=900)
    out = subprocess.run([sys.executable, "squad/evaluate-v1.1.py", sample, preds, str(scores["f1"])],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    got = json.loads(out.stdout.splitlines()[0])
    assert out.returncode == 0, out.stdout
    assert got["f1"] >= scores["f1"] - 0.01 and got["exact_match"] >= scores["exact_match"] - 0.01, got
    # The card states the same numbers as eval.json.
    card = (DEFAULT_MODEL / "README.md").read_text()
    assert f"{scores['f1']:.2f}" in card and f"{scores['exact_match']:.2f}" in card


def test_default_model_answers_sample_passage():
    out = subprocess.run([sys.executable, "inference.py", "--backend", "onnxruntime", "-pf",
                          "scripts/sample_passage.txt", "-q", "What is TensorRT?", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert re.search(r"inference platform|deep learning", r["answer"]), r


def test_notebook_runs_end_to_end():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "inference.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps([o.get("data", {}).get("text/plain", "") for o in outputs])
    assert "1961" in text or "1972" in text, text[:2000]

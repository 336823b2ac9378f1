"""The command lines as a user runs them: builder.py, inference.py, perf.py."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from model_fixtures import REPO, save_random_hf_model


def run(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_user_error(proc, pattern: str):
    """Exit status 2, one line `error: ...` matching pattern, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert any(line.startswith(("error:", "usage:")) or ": error:" in line
               for line in proc.stderr.splitlines()), proc.stderr
    assert re.search(pattern, proc.stderr, flags=re.I), proc.stderr


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_hf_model(tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture(scope="module")
def engine(model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("eng") / "small.engine"
    proc = run("builder.py", "--hf", model_dir, "-o", path, "-b", "1", "-b", "8", "-s", "64",
               "-s", "128", "--backend", "onnxruntime")
    assert "wrote" in proc.stdout
    return path


def test_builder_writes_engine_and_onnx(model_dir, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    run("builder.py", "--hf", model_dir, "--onnx-out", onnx_path)
    assert onnx_path.stat().st_size > 0


def test_builder_errors(model_dir, tmp_path):
    assert_user_error(run("builder.py", "-o", tmp_path / "x.engine", check=False), "exactly one checkpoint")
    assert_user_error(run("builder.py", "--hf", tmp_path / "nowhere", "-o", tmp_path / "x.engine",
                          check=False), "nowhere")
    assert_user_error(run("builder.py", "--hf", model_dir, "-o", tmp_path / "x.engine", "-s", "4096",
                          "--backend", "onnxruntime", check=False), "4096")
    assert_user_error(run("builder.py", "--hf", model_dir, "-o", tmp_path / "x.engine", "-w", "-1",
                          check=False), "workspace")
    assert_user_error(run("builder.py", "--hf", model_dir, "-o", tmp_path / "x.engine", "--fp16",
                          "--backend", "onnxruntime", check=False), "fp32 only")
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    assert_user_error(run("builder.py", "--hf", model_dir, "-v", bad_vocab, "-o", tmp_path / "x.engine",
                          "--backend", "onnxruntime", check=False), "vocab")


def test_inference_answers(engine):
    passage = "Paris is the capital of France. The Eiffel tower was built in 1889."
    proc = run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-p", passage,
               "-q", "what is the capital?",
               "-q", "when was the tower built?", "--json")
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["question"] for r in results] == ["what is the capital?", "when was the tower built?"]
    for r in results:
        assert passage[r["start"]:r["end"]] == r["answer"] and 0 <= r["probability"] <= 1


def test_inference_bad_input(engine, tmp_path):
    assert_user_error(run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-p", "   ", "-q", "why?",
                          check=False), "passage")
    assert_user_error(run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-p", "Some text.", "-q", " ",
                          check=False), "question")
    assert_user_error(run("inference.py", "-e", tmp_path / "none.engine", "-p", "a", "-q", "b",
                          check=False), "no engine file")
    junk = tmp_path / "junk.engine"
    junk.write_bytes(b"\x00" * 1000)
    assert_user_error(run("inference.py", "-e", junk, "-p", "a", "-q", "b", check=False), "not a usable engine")
    latin1 = tmp_path / "passage.txt"
    latin1.write_bytes("Caf\xe9 au lait".encode("latin-1"))
    assert_user_error(run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-pf", latin1, "-q", "what?",
                          check=False), "not UTF-8")
    assert_user_error(run("inference.py", "-e", engine, "-s", "384", "-p", "a b", "-q", "b?",
                          check=False), "sequence length 384")
    blank = tmp_path / "questions.txt"
    blank.write_text("\n  \n", encoding="utf-8")  # a question file with no question must not turn interactive
    assert_user_error(run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-p", "Some text.",
                          "-qf", blank, check=False), "no questions")
    bad_squad = tmp_path / "squad.json"
    bad_squad.write_text(json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "x"}]}]}]}))
    assert_user_error(run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-sq", bad_squad, "-o",
                          tmp_path / "p.json", check=False), "context|field")


def test_inference_reads_standard_input(engine):
    """-pf - and -qf - read standard input, as Unix tools do."""
    passage = "Paris is the capital of France. The Eiffel tower was built in 1889."
    common = ("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "--json")

    def run_stdin(*args, stdin: str):
        return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                              input=stdin, timeout=300)

    by_file = run(*common, "-p", passage, "-q", "what is the capital?", "-q", "when was the tower built?")
    questions = run_stdin(*common, "-p", passage, "-qf", "-", stdin="what is the capital?\n\nwhen was the tower built?\n")
    text = run_stdin(*common, "-pf", "-", "-q", "what is the capital?", "-q", "when was the tower built?",
                     stdin=passage)
    answers = [[json.loads(line)["answer"] for line in p.stdout.splitlines()] for p in (by_file, questions, text)]
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 2, (answers, questions.stderr, text.stderr)
    assert_user_error(run_stdin(*common, "-p", passage, "-qf", "-", stdin=" \n"), "standard input holds no questions")
    assert_user_error(run_stdin(*common, "-pf", "-", "-qf", "-", stdin="x"), "only one of -pf and -qf")


def test_unwritable_outputs_fail_before_the_work(model_dir, engine, tmp_path):
    """An output that cannot be written is refused at once (nothing computed, nothing created)."""
    missing = tmp_path / "no" / "such" / "dir"
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}))
    proc = run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-sq", squad,
               "-o", missing / "p.json", "--no-progress", check=False)
    assert_user_error(proc, "no directory")
    assert "questions" not in proc.stdout  # refused before the run, not after it
    assert_user_error(run("inference.py", "-e", engine, "-s", "64", "--max-query-length", "16", "-sq", squad, "-o", tmp_path,
                          check=False), "is a directory")
    assert_user_error(run("perf.py", "-e", engine, "-b", "1", "-s", "64", "-i", "2", "-w", "0",
                          "--json", missing / "perf.json", check=False), "no directory")
    for opt in ("-o", "--onnx-out"):
        assert_user_error(run("builder.py", "--hf", model_dir, opt, missing / "x.out", "--backend",
                              "onnxruntime", check=False), "no directory")
    assert not (tmp_path / "no").exists()


def test_inference_long_question_and_huge_passage(engine, tmp_path):
    words = [f"word{i % 997}" for i in range(100_000)]
    words[73_000:73_004] = ["the", "tower", "was", "1889"]
    passage = tmp_path / "huge.txt"
    passage.write_text(" ".join(words), encoding="utf-8")
    long_q = "what " * 300 + "year?"
    proc = run("inference.py", "-e", engine, "-s", "128", "--doc-stride", "48", "-pf", passage,
               "-q", long_q, "--json", timeout=600)
    r = json.loads(proc.stdout.splitlines()[0])
    text = passage.read_text(encoding="utf-8")
    assert text[r["start"]:r["end"]] == r["answer"] and r["answer"]


def test_perf_runs(engine, tmp_path):
    out = tmp_path / "perf.json"
    proc = run("perf.py", "-e", engine, "-b", "1", "-b", "8", "-s", "64", "-i", "5", "-w", "1",
               "--json", out)
    rows = json.loads(out.read_text())["results"]
    assert [r["batch"] for r in rows] == [1, 8]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["sequences_per_s"] > 0
    assert "p99" in proc.stdout
    assert_user_error(run("perf.py", "-e", engine, "-b", "9", "-s", "64", "-i", "1", check=False),
                      "outside this engine's profiles")


def test_inference_c_refuses_cpu_engines(engine):
    assert_user_error(run("inference_c.py", "-e", engine, "-s", "64", "--max-query-length", "16",
                          "-p", "Some text.", "-q", "what?", check=False), "inference_c.py runs cuda engines")
    assert_user_error(run("inference_c.py", "--backend", "onnxruntime", "-p", "Some text.", "-q", "what?",
                          check=False), "for ONNX Runtime use inference.py --backend onnxruntime")

"""Outputs and options of the command lines as a user meets them: a failed write keeps the old file,
an output never overwrites an input, options that would be ignored are refused, and a closed pipe,
a batch too large for memory or a missing file each end in one plain line."""
from __future__ import annotations

import json
import os
import pty
import resource
import signal
import stat
import subprocess
import sys

import pytest

from model_fixtures import REPO
from test_cli import assert_user_error, engine, model_dir, run  # noqa: F401 - the same fixtures

PASSAGE = "Paris is the capital of France. The Eiffel tower was built in 1889."
SMALL = ("-s", "64", "--max-query-length", "16")


@pytest.fixture()
def squad(tmp_path):
    """A SQuAD file whose predictions JSON is several KiB (long question ids)."""
    qas = [{"id": f"q{i}-" + "x" * 200, "question": "Where is Paris?", "answers": []} for i in range(20)]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": PASSAGE, "qas": qas}]}]}))
    return path


def run_file_size_limited(*args, limit=2048):
    """A command that may write files of `limit` bytes at most: a bigger write fails (EFBIG),
    as on a full disk."""
    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit_writes)


def assert_kept(path, old: bytes):
    """path still holds old, and no temporary file is left beside it."""
    assert path.read_bytes() == old
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")) == []


def test_failed_write_keeps_the_old_output(model_dir, engine, squad, tmp_path):
    old = b"the previous results\n" * 10
    outputs = {
        "predictions": ("inference.py", "-e", engine, *SMALL, "-sq", squad, "--no-progress", "-o"),
        "perf": ("perf.py", "-e", engine, "-b", "1", "-b", "4", "-s", "64", "-i", "2", "-w", "0", "--json"),
        "onnx": ("builder.py", "--hf", model_dir, "--onnx-out"),
    }
    for name, command in outputs.items():
        out = tmp_path / f"{name}.out"
        out.write_bytes(old)
        proc = run_file_size_limited(*command, out, limit=len(old) + 10)
        assert_user_error(proc, f"cannot write .*{name}.out.*File too large")
        assert_kept(out, old)


def test_successful_write_replaces_the_file_and_keeps_its_mode(engine, squad, tmp_path):
    out = tmp_path / "predictions.json"
    out.write_text("old")
    out.chmod(0o640)
    run("inference.py", "-e", engine, *SMALL, "-sq", squad, "--no-progress", "-o", out)
    assert len(json.loads(out.read_text())) == 20
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert_kept(out, out.read_bytes())


def test_an_output_never_overwrites_an_input(model_dir, engine, squad, tmp_path):
    weights = model_dir / "model.safetensors"
    link = tmp_path / "link.engine"
    link.symlink_to(engine)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "vocab.txt").write_bytes((model_dir / "vocab.txt").read_bytes())
    inputs = {p: p.read_bytes() for p in (engine, squad, weights, config_dir / "vocab.txt")}
    cases = [
        (("inference.py", "-e", engine, *SMALL, "-sq", squad, "-o", squad), "is also the SQuAD file"),
        (("inference.py", "-e", engine, *SMALL, "-sq", squad, "-o", engine), "is also the engine file"),
        (("perf.py", "-e", engine, "-s", "64", "--json", link), "is also the engine file"),
        (("builder.py", "--hf", model_dir, "-o", weights), "is also a file of the --hf checkpoint"),
        (("builder.py", "--hf", model_dir, "-o", tmp_path / "x.engine", "-c", config_dir,
          "--onnx-out", config_dir / "vocab.txt"), "is also a file of the -c/--config-dir checkpoint"),
        (("builder.py", "--hf", model_dir, "-o", tmp_path / "s.out", "--onnx-out", tmp_path / "s.out"),
         "ONNX file .*s.out is also the engine file"),
    ]
    for command, message in cases:
        assert_user_error(run(*command, check=False), message + "; write to another file")
    assert {p: p.read_bytes() for p in inputs} == inputs
    assert not (tmp_path / "s.out").exists()
    # A new file in the checkpoint's folder is fine, and so is rebuilding it there.
    for _ in range(2):
        run("builder.py", "--hf", model_dir, "-o", model_dir / "model.engine", "--backend", "onnxruntime")


def test_options_that_would_be_ignored_are_refused(model_dir, engine, tmp_path):
    ask = ("inference.py", "-e", engine, *SMALL, "-p", PASSAGE, "-q", "where?")
    assert_user_error(run(*ask, "-o", tmp_path / "p.json", check=False), "-o/--output-prediction-file goes with -sq")
    assert not (tmp_path / "p.json").exists()
    assert_user_error(run(*ask, "--null-score-diff-threshold", "2", check=False),
                      "--null-score-diff-threshold applies with --version-2-with-negative")
    run(*ask, "--version-2-with-negative", "--null-score-diff-threshold", "2")
    assert_user_error(run(*ask, "--backend", "onnxruntime", check=False), "with -e the engine file says")
    build = ("builder.py", "--hf", model_dir, "-o", tmp_path / "x.engine", "--backend", "onnxruntime")
    assert_user_error(run(*build, "-w", "64", check=False), "cuda backend only.*leave out -w")
    assert_user_error(run(*build, "-tcf", tmp_path / "tc.json", check=False), "leave out -tcf")
    # No engine is built with --onnx-out alone, on any backend: the timing cache is not used.
    proc = run("builder.py", "--hf", model_dir, "--onnx-out", tmp_path / "m.onnx", "-tcf", tmp_path / "tc.json")
    assert proc.stderr.startswith("warning: -w/-tcf apply to the cuda backend") and "-tcf ignored" in proc.stderr
    assert (tmp_path / "m.onnx").is_file() and not (tmp_path / "tc.json").exists()


def test_perf_checks_every_shape_before_timing(engine, tmp_path):
    perf = ("perf.py", "-e", engine, "-i", "1", "-w", "0")
    for args, message in ((("-b", "0"), "-b/--batch-size must be at least 1, got 0"),
                          (("-b", "1", "-b", "-3"), "got -3"), (("-r", "-1"), "-r/--random-seed"),
                          (("-s", "0"), "-s/--sequence-length")):
        assert_user_error(run(*perf, *args, check=False), message)
    proc = run(*perf, "-s", "128", "-b", "1", "-b", "64", check=False)
    assert_user_error(proc, "batch 64 x sequence length 128 is outside")
    assert proc.stdout == ""  # batch 1 was not timed first
    # ONNX Runtime runs any length up to a profile's, as inference.py does.
    out = tmp_path / "perf.json"
    run(*perf, "-s", "32", "-b", "4", "--json", out)
    assert [(r["batch"], r["seq"]) for r in json.loads(out.read_text())["results"]] == [(4, 32)]


def test_out_of_memory_is_one_line(model_dir, tmp_path):
    huge = tmp_path / "huge.engine"
    batch = str(10**12)  # inputs of 466 TiB: more than any address space
    run("builder.py", "--hf", model_dir, "-o", huge, "-b", batch, "-s", "128", "--backend", "onnxruntime")
    proc = run("perf.py", "-e", huge, "-b", batch, "-s", "128", "-i", "1", "-w", "0", check=False)
    assert_user_error(proc, "(?m)^error: out of memory .*: use a smaller batch or sequence length$")


def test_closed_pipe_ends_quietly(engine, tmp_path):
    """`inference.py ... | head -1`: no traceback, no "Exception ignored", exit 141 as after SIGPIPE."""
    questions = tmp_path / "q.txt"
    questions.write_text("".join(f"question {i}: when was the tower built?\n" for i in range(2000)))
    proc = subprocess.Popen([sys.executable, "inference.py", "-e", engine, *SMALL, "-p", PASSAGE,
                             "-qf", questions], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().startswith("Question: question 0")
    proc.stdout.close()  # as head -1 does; 2000 answers are far more than a pipe holds
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, stderr
    assert stderr == ""


def test_interactive_prompts_go_to_stderr(engine):
    """With --json, standard output holds the answers' JSON lines only."""
    main, terminal = pty.openpty()  # interactive mode needs a terminal on standard input
    try:
        os.write(main, b"when was the tower built?\n\n")
        proc = subprocess.run([sys.executable, "inference.py", "-e", engine, *SMALL, "-p", PASSAGE, "--json"],
                              cwd=REPO, stdin=terminal, capture_output=True, text=True, timeout=300)
    finally:
        os.close(main)
        os.close(terminal)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["question"] for line in proc.stdout.splitlines()] == ["when was the tower built?"]
    assert "Ask questions" in proc.stderr and proc.stderr.count("Question: ") == 2


def test_missing_file_hint_fits_the_failure(engine, tmp_path):
    ask = ("inference.py", "-e", engine, *SMALL, "-q", "what?", "-pf")
    proc = run(*ask, tmp_path / "nope.txt", check=False)
    assert_user_error(proc, r"(?m)no passage file at .*nope.txt \(not found\): check the path$")
    assert "UTF-8" not in proc.stderr
    assert_user_error(run(*ask, tmp_path, check=False), "is a directory: give the path of a file")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\xe9".encode("latin-1"))
    assert_user_error(run(*ask, latin1, check=False), "not UTF-8.*iconv")

"""scripts/offline_benchmark.py's multi-stream pass: every call made exactly once, outputs in call order,
the calls shared by the runners' threads (the engine runs themselves need a GPU and run on the device
machine); and its bad input, refused in one line before any work."""
from __future__ import annotations

import importlib.util
import json
import lzma
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def offline_benchmark():
    spec = importlib.util.spec_from_file_location("offline_benchmark", ROOT / "scripts" / "offline_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("n_runners", [1, 2, 3])
def test_concurrent_pass_runs_every_call_once_in_order(offline_benchmark, n_runners):
    calls, lock = [], threading.Lock()

    def run(runner, batch):
        with lock:
            calls.append((runner, batch, threading.get_ident()))
        time.sleep(0.002)  # the GIL is released, as the native runner releases it while the GPU works
        return batch * 10 + runner

    batches = list(range(23))
    seconds, outs = offline_benchmark.concurrent_pass(list(range(n_runners)), run, batches)
    assert seconds > 0
    assert sorted(b for _, b, _ in calls) == batches  # each call once
    assert [o // 10 for o in outs] == batches  # outputs in call order, whichever runner made them
    by_runner = {r for r, _, _ in calls}
    assert by_runner == set(range(n_runners))  # every runner took calls from the queue
    for r in by_runner:  # one host thread per runner
        assert len({t for rr, _, t in calls if rr == r}) == 1


def test_concurrent_pass_reports_a_runner_error(offline_benchmark):
    def run(runner, batch):
        if batch == 5:
            raise RuntimeError("out of memory on the GPU")
        return batch

    with pytest.raises(RuntimeError, match="out of memory"):
        offline_benchmark.concurrent_pass([0, 1], run, list(range(10)))


# ---------------------------------------------------------------- bad input: one line, before any work

def _squad_file(path: Path, n_questions: int = 2) -> Path:
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "The tower was built in 1889.", "qas": [
        {"id": f"q{i}", "question": "When was it built?"} for i in range(n_questions)]}]}]}), encoding="utf-8")
    return path


def _main_error(offline_benchmark, tmp_path, *args) -> str:
    with pytest.raises(UserError) as err:
        offline_benchmark.main([*map(str, args), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()  # nothing written
    return str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--limit", "-5"], r"window limit \(--limit\) must be a positive integer, got -5"),  # was: all but 5
    (["--limit", "0"], r"--limit\) must be a positive integer, got 0"),  # was: all
    (["-b", "0"], r"batch size \(-b\) must be a positive integer, got 0"),
    (["-b", "128,-1"], r"batch size \(-b\) must be a positive integer, got -1"),
    (["--streams", "0"], r"--streams\) must be a positive integer"),
    (["-s", "0"], r"max_seq_length \(-s\) must be a positive integer"),
    (["-s", "1024"], r"-s 1024 is over the random BERT-large's 512 positions"),
    (["--doc-stride", "400"], r"--doc-stride <= 317"),
    (["--model-dir", "/nonexistent-model"], r"--model-dir /nonexistent-model holds no config.json"),
])
def test_bad_options_fail_first(offline_benchmark, tmp_path, args, message):
    assert re.search(message, _main_error(offline_benchmark, tmp_path, "--squad", _squad_file(tmp_path / "s.json"),
                                          *args))


def test_bad_squad_files_fail_first(offline_benchmark, tmp_path):
    assert "no SQuAD file at /nonexistent.json" in _main_error(offline_benchmark, tmp_path, "--squad",
                                                               "/nonexistent.json")
    assert "no SQuAD file at /nonexistent.json.xz" in _main_error(offline_benchmark, tmp_path, "--squad",
                                                                  "/nonexistent.json.xz")
    (tmp_path / "bad.json").write_text('{"data": [', encoding="utf-8")
    assert "not valid JSON" in _main_error(offline_benchmark, tmp_path, "--squad", tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"data": []}', encoding="utf-8")
    assert "holds no questions" in _main_error(offline_benchmark, tmp_path, "--squad", tmp_path / "empty.json")
    (tmp_path / "bad.json.xz").write_bytes(b"not xz at all")
    assert "cannot read SQuAD file" in _main_error(offline_benchmark, tmp_path, "--squad", tmp_path / "bad.json.xz")
    (tmp_path / "list.json.xz").write_bytes(lzma.compress(b"[1, 2]"))
    assert "not in SQuAD format" in _main_error(offline_benchmark, tmp_path, "--squad", tmp_path / "list.json.xz")


def test_xz_squad_file_is_read(offline_benchmark, tmp_path):
    raw = _squad_file(tmp_path / "s.json", 3).read_bytes()
    (tmp_path / "s.json.xz").write_bytes(lzma.compress(raw))
    assert [e.qas_id for e in offline_benchmark.read_squad(str(tmp_path / "s.json.xz"))] == ["q0", "q1", "q2"]


def test_out_that_is_a_file_fails_first(offline_benchmark, tmp_path):
    squad = _squad_file(tmp_path / "s.json")
    (tmp_path / "taken").write_text("x")
    with pytest.raises(UserError, match=r"--out .*taken is a file, not a directory"):
        offline_benchmark.main(["--squad", str(squad), "--out", str(tmp_path / "taken"),
                                "--work", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()


def test_without_a_gpu_it_stops_before_tokenizing_or_writing(offline_benchmark, tmp_path):
    from helpers import cuda_backend

    if cuda_backend.available()[0]:
        pytest.skip("a usable GPU is here: the benchmark would run")
    squad = _squad_file(tmp_path / "s.json")
    t0 = time.perf_counter()
    message = _main_error(offline_benchmark, tmp_path, "--squad", squad)
    why = cuda_backend.available()[1]
    assert message == f"this benchmark builds and times cuda engines, which cannot run here: {why}"
    assert "run on a machine with an NVIDIA GPU" in why or "build it with scripts/setup.sh" in why
    assert "--backend" not in message  # an option this script does not have
    assert time.perf_counter() - t0 < 30


def test_command_line_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/offline_benchmark.py", "--squad", "/nonexistent.json",
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: no SQuAD file")


def test_gpu_session_refuses_an_unknown_step_before_building(tmp_path):
    """A typo in gpu_session.sh's steps costs one line, not a device build: checked before cmake runs."""
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_session.sh"), "tests,ofline"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)}, timeout=30)
    assert run.returncode == 2
    assert run.stderr == ("error: unknown step 'ofline': use tests, bench, offline, all or build "
                          "(comma-separated)\n")
    assert run.stdout == "" and not list(tmp_path.iterdir())

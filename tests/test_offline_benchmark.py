"""scripts/offline_benchmark.py's multi-stream pass: every call made exactly once, outputs in call order,
the calls shared by the runners' threads (the engine runs themselves need a GPU and run on the device
machine)."""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

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

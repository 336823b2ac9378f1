"""SM clock, power and clock-event reasons of the GPU while a benchmark runs, sampled by nvidia-smi.

Sustained tensor-core work on the H100 runs below the boost clock that short or isolated kernels
see (ncu, micro-benchmarks): at large batches the GPU sits at its power cap. Benchmarks (perf.py,
scripts/offline_benchmark.py) record the clocks over each timed pass with ClockMonitor, so that
their figures say which regime they were measured in; scripts/gpu_clocks.py wraps any command.
Without nvidia-smi (no NVIDIA driver) nothing is sampled and the summaries say so.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from datetime import datetime

FIELDS = ("clocks.sm", "power.draw", "temperature.gpu", "utilization.gpu", "clocks_event_reasons.active")
# nvidia-smi's clock event reason bits (nvidia-smi --help-query-gpu)
REASONS = {0x1: "idle", 0x2: "applications_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
           0x10: "sync_boost", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake",
           0x100: "display_clocks"}


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


class ClockMonitor:
    """Context manager: samples the GPU every interval_ms in the background; window(t0, t1)
    summarises the samples between two time.time() stamps, timed(label) records a with-block's
    window for summary(label). Without nvidia-smi (or enabled=False) it records nothing."""

    def __init__(self, interval_ms: int = 20, gpu: int | None = None, enabled: bool = True):
        self.enabled = enabled
        if gpu is None:  # the process's first visible GPU, as nvidia-smi numbers it
            first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
            gpu = int(first) if first.isdigit() else 0
        self.interval_ms, self.gpu = interval_ms, gpu
        self.samples: list[tuple[float, dict]] = []
        self.passes: dict[str, tuple[float, float]] = {}  # named windows (time.time() stamps)
        self._proc = self._thread = None

    def __enter__(self):
        if not self.enabled or shutil.which("nvidia-smi") is None:
            return self
        cmd = ["nvidia-smi", "-i", str(self.gpu), f"--query-gpu=timestamp,{','.join(FIELDS)}",
               "--format=csv,noheader,nounits", "-lms", str(self.interval_ms)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != len(FIELDS) + 1:
                continue
            try:  # nvidia-smi's own timestamp: the pipe may deliver lines late
                t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            row = {f: _number(v) for f, v in zip(FIELDS[:-1], parts[1:-1])}
            row["reasons"] = int(parts[-1], 16) if parts[-1].startswith("0x") else 0
            self.samples.append((t, row))

    def __exit__(self, *exc):
        if self._proc is not None:
            time.sleep(2 * self.interval_ms / 1000)
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._thread.join(timeout=5)
        return False

    @contextlib.contextmanager
    def timed(self, label: str):
        """Records the wall-clock window of the with-block as passes[label]."""
        t0 = time.time()
        try:
            yield
        finally:
            self.passes[label] = (t0, time.time())

    def summary(self, label: str) -> dict:
        return self.window(*self.passes[label]) if label in self.passes else {"samples": 0}

    def window(self, t0: float = float("-inf"), t1: float = float("inf"), busy_only: bool = False) -> dict:
        rows = [r for t, r in self.samples if t0 <= t <= t1 and (not busy_only or r["utilization.gpu"] >= 90)]
        if not rows:
            return {"samples": 0}
        clk = sorted(r["clocks.sm"] for r in rows)
        pw = [r["power.draw"] for r in rows]
        reasons: dict[str, int] = {}
        for r in rows:
            for bit, name in REASONS.items():
                if r["reasons"] & bit:
                    reasons[name] = reasons.get(name, 0) + 1
        return {"samples": len(rows), "sm_clock_mhz_mean": round(sum(clk) / len(clk), 1),
                "sm_clock_mhz_p50": clk[len(clk) // 2], "sm_clock_mhz_min": clk[0], "sm_clock_mhz_max": clk[-1],
                "power_w_mean": round(sum(pw) / len(pw), 1), "power_w_max": max(pw),
                "temperature_c_max": max(r["temperature.gpu"] for r in rows),
                "clock_event_reasons": {k: round(v / len(rows), 3) for k, v in reasons.items()}}


def limiter(s: dict) -> str:
    """What held the clock back in most of the samples ('-' if nothing did), e.g. 'sw_power_cap'."""
    why = [k for k, v in s.get("clock_event_reasons", {}).items() if v >= 0.5 and k != "idle"]
    return ", ".join(why) or "-"


def joules_per_item(s: dict, items_per_s: float) -> float | None:
    """Mean power over a pass divided by its throughput: the energy each item (window, sequence)
    cost. At the power cap a run's items/s follows the card's clock, which drifts with its
    temperature between runs; joules per item is the figure the code sets. None without samples."""
    if not s.get("samples") or not items_per_s > 0:
        return None
    return s["power_w_mean"] / items_per_s


def describe(s: dict) -> str:
    if not s.get("samples"):
        return "no clock samples (nvidia-smi missing or the window too short)"
    why = ", ".join(f"{k} {v:.0%}" for k, v in s["clock_event_reasons"].items()) or "none"
    return (f"SM clock mean {s['sm_clock_mhz_mean']:.0f} MHz (p50 {s['sm_clock_mhz_p50']:.0f}, min "
            f"{s['sm_clock_mhz_min']:.0f}, max {s['sm_clock_mhz_max']:.0f}), power mean {s['power_w_mean']:.0f} W "
            f"(max {s['power_w_max']:.0f}), {s['samples']} samples; clock event reasons: {why}")

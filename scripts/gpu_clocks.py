#!/usr/bin/env python3
"""SM clock, power and clock-event reasons of GPU 0 while benchmarks run, sampled by nvidia-smi.

Sustained tensor-core work on the H100 runs below the boost clock that short or isolated kernels
see (ncu, micro-benchmarks); this measures how far, and why (nvidia-smi's clock event reasons:
software power cap, thermal, ...), instead of inferring it from timings.

    python3 scripts/gpu_clocks.py [--interval-ms 20] [--out FILE.json] -- COMMAND [ARGS...]

runs COMMAND and prints the clocks over its busy samples (GPU utilisation >= 90%). Benchmarks
import ClockMonitor and summarise the window of each timed pass (scripts/offline_benchmark.py).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
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
    """Context manager: samples GPU 0 every interval_ms in the background; window(t0, t1) summarises
    the samples between two time.time() stamps. Without nvidia-smi it records nothing."""

    def __init__(self, interval_ms: int = 20, gpu: int = 0):
        self.interval_ms, self.gpu = interval_ms, gpu
        self.samples: list[tuple[float, dict]] = []
        self.passes: dict[str, tuple[float, float]] = {}  # named windows (time.time() stamps)
        self._proc = self._thread = None

    def __enter__(self):
        if shutil.which("nvidia-smi") is None:
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


def describe(s: dict) -> str:
    if not s.get("samples"):
        return "no clock samples (nvidia-smi missing or the window too short)"
    why = ", ".join(f"{k} {v:.0%}" for k, v in s["clock_event_reasons"].items()) or "none"
    return (f"SM clock mean {s['sm_clock_mhz_mean']:.0f} MHz (p50 {s['sm_clock_mhz_p50']:.0f}, min "
            f"{s['sm_clock_mhz_min']:.0f}, max {s['sm_clock_mhz_max']:.0f}), power mean {s['power_w_mean']:.0f} W "
            f"(max {s['power_w_max']:.0f}), {s['samples']} samples; clock event reasons: {why}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval-ms", type=int, default=20)
    p.add_argument("--out", help="write the summary and every sample as JSON here")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command to run after --")
    with ClockMonitor(args.interval_ms) as mon:
        rc = subprocess.call(cmd)
    busy, everything = mon.window(busy_only=True), mon.window()
    print(f"gpu_clocks: busy (utilisation >= 90%): {describe(busy)}")
    print(f"gpu_clocks: whole run: {describe(everything)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": cmd, "busy": busy, "all": everything, "samples": mon.samples}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""helpers.gpu_clocks: parsing and summarising nvidia-smi's samples (CPU; a stand-in nvidia-smi on
PATH prints what the real one prints for the query, alternating a busy power-capped sample and an
idle one)."""
from __future__ import annotations

import sys
import time

from helpers.gpu_clocks import ClockMonitor, describe

FAKE_SMI = f"""#!{sys.executable}
import datetime, sys, time
assert "--format=csv,noheader,nounits" in sys.argv and "-lms" in sys.argv
i = 0
while True:
    now = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    busy = i % 2 == 1
    print(f"{{now}}, {{1410 if busy else 1980}}, {{690.5 if busy else 70.0}}, 51, {{100 if busy else 0}}, "
          f"{{'0x0000000000000004' if busy else '0x0000000000000001'}}", flush=True)
    print("garbage line", flush=True)  # ignored
    i += 1
    time.sleep(0.01)
"""


def test_samples_parsed_and_summarised(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with ClockMonitor(interval_ms=10) as mon:
        time.sleep(0.2)
        with mon.timed("pass"):
            time.sleep(0.4)
        time.sleep(0.1)
    whole, part = mon.window(), mon.summary("pass")
    assert whole["samples"] > part["samples"] >= 10
    busy = mon.window(*mon.passes["pass"], busy_only=True)
    assert busy["sm_clock_mhz_mean"] == busy["sm_clock_mhz_max"] == 1410
    assert busy["power_w_mean"] == 690.5 and busy["clock_event_reasons"] == {"sw_power_cap": 1.0}
    assert 1410 < part["sm_clock_mhz_mean"] < 1980 and part["sm_clock_mhz_min"] == 1410
    assert 0.3 < part["clock_event_reasons"]["idle"] < 0.7
    assert "1410 MHz" in describe(busy) and "sw_power_cap 100%" in describe(busy)
    assert mon.summary("never timed") == {"samples": 0}


def test_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with ClockMonitor() as mon, mon.timed("x"):
        pass
    assert mon.summary("x") == {"samples": 0} and "no clock samples" in describe(mon.summary("x"))
    with ClockMonitor(enabled=False) as off:
        pass
    assert off.samples == []


def test_limiter():
    from helpers.gpu_clocks import limiter

    assert limiter({"clock_event_reasons": {"sw_power_cap": 1.0, "idle": 0.9}}) == "sw_power_cap"
    assert limiter({"clock_event_reasons": {"sw_thermal": 0.2}}) == "-" and limiter({"samples": 0}) == "-"


def test_joules_per_item():
    from helpers.gpu_clocks import joules_per_item

    assert joules_per_item({"samples": 12, "power_w_mean": 697.0}, 4646.2) == 697.0 / 4646.2
    assert joules_per_item({"samples": 0}, 4646.2) is None
    assert joules_per_item({"samples": 3, "power_w_mean": 600.0}, 0.0) is None

#!/usr/bin/env python3
"""Run a command and report the GPU's SM clock, power and clock event reasons while it ran.

    python3 scripts/gpu_clocks.py [--interval-ms 20] [--out FILE.json] -- COMMAND [ARGS...]

prints the clocks over the busy samples (GPU utilisation >= 90%) and over the whole run
(helpers/gpu_clocks.py samples nvidia-smi).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from helpers.gpu_clocks import ClockMonitor, describe

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
        Path(args.out).write_text(json.dumps({"command": cmd, "busy": busy, "all": everything,
                                              "samples": mon.samples}))
    return rc


if __name__ == "__main__":
    sys.exit(main())

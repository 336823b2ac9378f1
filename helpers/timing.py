"""Latency statistics, computed by the same C++ code as the perf binary (infer_c/timing_stats.h)."""
from __future__ import annotations

from helpers.errors import UserError


def summarize(latencies_ms: list[float], batch: int) -> dict:
    """mean/p50/p95/p99 in ms and sequences per second over a list of per-run latencies."""
    try:
        from helpers import _timing_stats
    except ImportError:
        raise UserError("the native helpers are not built; run scripts/setup.sh") from None
    return dict(_timing_stats.compute(list(latencies_ms), int(batch)))

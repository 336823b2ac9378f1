// Latency statistics: THE one implementation, used by the native perf binary (infer_c/perf.cpp)
// and, through the C++-only module helpers/_timing_stats, by perf.py. Header-only, no CUDA.
//
// Percentiles interpolate linearly between the two nearest ranks, as numpy.percentile's default
// ("linear"): for sorted x of n values, p% lies at rank r = p/100 * (n - 1), and the result is
// x[floor(r)] + (r - floor(r)) * (x[floor(r) + 1] - x[floor(r)]).
// Throughput is sequences per second at the mean latency: batch * 1000 / mean_ms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace bertqa {

struct TimingStats {
    size_t count = 0;
    int batch = 0;
    double mean_ms = 0, min_ms = 0, max_ms = 0, stddev_ms = 0;
    double p50_ms = 0, p95_ms = 0, p99_ms = 0;
    double sequences_per_s = 0;
};

// p in [0, 100] of already sorted values (non-empty).
inline double percentile_sorted(const std::vector<double>& sorted, double p) {
    if (sorted.empty()) throw std::invalid_argument("percentile of no values");
    if (!(p >= 0.0 && p <= 100.0)) throw std::invalid_argument("percentile must be in [0, 100]");
    const double rank = p / 100.0 * double(sorted.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(rank));
    const size_t hi = std::min(lo + 1, sorted.size() - 1);
    const double frac = rank - double(lo);
    return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

// Statistics of per-iteration latencies in milliseconds, for inferences of `batch` sequences.
inline TimingStats compute_timing_stats(std::vector<double> latencies_ms, int batch) {
    if (latencies_ms.empty())
        throw std::invalid_argument("no latencies to summarise: run at least one timed iteration (-i >= 1)");
    if (batch < 1) throw std::invalid_argument("batch must be >= 1, got " + std::to_string(batch));
    for (double v : latencies_ms)
        if (!std::isfinite(v) || v < 0)
            throw std::invalid_argument("latencies must be finite and non-negative, got " + std::to_string(v));
    std::sort(latencies_ms.begin(), latencies_ms.end());
    TimingStats s;
    s.count = latencies_ms.size();
    s.batch = batch;
    double sum = 0;
    for (double v : latencies_ms) sum += v;
    s.mean_ms = sum / double(s.count);
    double var = 0;
    for (double v : latencies_ms) var += (v - s.mean_ms) * (v - s.mean_ms);
    s.stddev_ms = std::sqrt(var / double(s.count));
    s.min_ms = latencies_ms.front();
    s.max_ms = latencies_ms.back();
    s.p50_ms = percentile_sorted(latencies_ms, 50);
    s.p95_ms = percentile_sorted(latencies_ms, 95);
    s.p99_ms = percentile_sorted(latencies_ms, 99);
    s.sequences_per_s = s.mean_ms > 0 ? double(batch) * 1000.0 / s.mean_ms : 0.0;
    return s;
}

}  // namespace bertqa

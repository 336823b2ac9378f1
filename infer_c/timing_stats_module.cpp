// helpers/_timing_stats: Python access to infer_c/timing_stats.h (C++ only, no CUDA), so perf.py
// and the native perf binary report statistics computed by the same code.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "timing_stats.h"

namespace py = pybind11;

PYBIND11_MODULE(_timing_stats, m) {
    m.doc() = "Latency statistics shared with the native perf binary (infer_c/timing_stats.h)";
    m.def(
        "compute",
        [](std::vector<double> latencies_ms, int batch) {
            const bertqa::TimingStats s = bertqa::compute_timing_stats(std::move(latencies_ms), batch);
            py::dict d;
            d["count"] = s.count;
            d["batch"] = s.batch;
            d["mean_ms"] = s.mean_ms;
            d["min_ms"] = s.min_ms;
            d["max_ms"] = s.max_ms;
            d["stddev_ms"] = s.stddev_ms;
            d["p50_ms"] = s.p50_ms;
            d["p95_ms"] = s.p95_ms;
            d["p99_ms"] = s.p99_ms;
            d["sequences_per_s"] = s.sequences_per_s;
            return d;
        },
        py::arg("latencies_ms"), py::arg("batch"),
        "Mean, min, max, stddev, p50/p95/p99 (linear interpolation, as numpy.percentile) in ms and "
        "sequences/s (batch * 1000 / mean_ms). ValueError on no or negative latencies.");
    m.def(
        "percentile",
        [](std::vector<double> values, double p) {
            std::sort(values.begin(), values.end());
            return bertqa::percentile_sorted(values, p);
        },
        py::arg("values"), py::arg("p"), "The p-th percentile (0..100), linear interpolation.");
}

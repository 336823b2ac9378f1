// helpers/_bertqa_cuda: pybind11 bindings of the CUDA runtime. Binding only: every check and
// error message lives beside the op it guards (bert_runtime.cpp, gemm.cpp, engine_file.cpp).
//
//   Runner(engine_path, enable_graph=True)
//     .run(input_ids, segment_ids, input_mask) -> float32 [B, S, 2]   (int32 C-contiguous arrays, no copies)
//     .run_packed(input_ids [T], segment_ids [T], cu_seqlens [B+1]) -> float32 [T, 2]   (packed engines)
//     .packed, .token_capacity, .max_batch, .max_seq, .token_granularity
//     .set_inputs(...), .time_forward(batch, seq, iterations, warmup) -> [ms]   (for perf.py)
//     .profiles, .header_json, .precision, .graph_enabled, .device_memory_bytes, .stats, .device
//   tune_gemms([(m, n, k, dtype, epilogue, partials, layernorm_after[, residual])], workspace_bytes, max_candidates, iterations,
//              extended_search, cold_weights) -> [dict]
//   device_info() -> dict;  cublaslt_version() -> int
//   exceptions UserError(ValueError), EngineFileError(UserError), DeviceError(UserError)
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bert_runtime.h"
#include "cuda_utils.h"
#include "errors.h"
#include "gemm.h"

namespace py = pybind11;
using namespace bertqa;

namespace {

using IntArray = py::array_t<int32_t, py::array::c_style>;

std::vector<int64_t> shape_of(const IntArray& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

py::dict device_dict(const DeviceInfo& d) {
    py::dict out;
    out["device"] = d.device;
    out["name"] = d.name;
    out["sm"] = d.sm;
    out["total_memory"] = d.total_memory;
    out["multiprocessors"] = d.multiprocessors;
    out["cuda_runtime_version"] = d.runtime_version;
    out["cuda_driver_version"] = d.driver_version;
    out["cublaslt_version"] = cublaslt_version();
    return out;
}

}  // namespace

PYBIND11_MODULE(_bertqa_cuda, m) {
    m.doc() = "BERT QA CUDA runtime: engine runner, GEMM tuning, device info";

    // Translators are tried newest first: the base class is registered before its subclasses.
    auto& user_error = py::register_exception<UserError>(m, "UserError", PyExc_ValueError);
    py::register_exception<EngineFileError>(m, "EngineFileError", user_error.ptr());
    py::register_exception<DeviceError>(m, "DeviceError", user_error.ptr());

    py::class_<BertRuntime>(m, "Runner")
        .def(py::init([](const std::string& path, bool enable_graph) {
                 py::gil_scoped_release release;
                 return new BertRuntime(path, enable_graph);
             }),
             py::arg("engine_path"), py::arg("enable_graph") = true)
        .def(
            "run",
            [](BertRuntime& rt, const IntArray& ids, const IntArray& segs, const IntArray& mask) {
                const auto [batch, seq] = BertRuntime::input_shape(shape_of(ids), shape_of(segs), shape_of(mask));
                py::array_t<float> out({py::ssize_t(batch), py::ssize_t(seq), py::ssize_t(2)});
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    rt.run(ids.data(), segs.data(), mask.data(), batch, seq, dst);
                }
                return out;
            },
            py::arg("input_ids"), py::arg("segment_ids"), py::arg("input_mask"))
        .def(
            "run_packed",
            [](BertRuntime& rt, const IntArray& ids, const IntArray& segs, const IntArray& cu) {
                if (ids.ndim() != 1 || segs.ndim() != 1 || cu.ndim() != 1)
                    throw UserError("packed input_ids, segment_ids and cu_seqlens must be 1-D arrays");
                if (segs.shape(0) != ids.shape(0))
                    throw UserError("packed input_ids and segment_ids must have the same length, got " +
                                    std::to_string(ids.shape(0)) + " and " + std::to_string(segs.shape(0)));
                if (ids.shape(0) > INT32_MAX || cu.shape(0) > INT32_MAX)
                    throw UserError("packed inputs are too long");
                const int tokens = int(ids.shape(0));
                const int batch = int(cu.shape(0)) - 1;
                py::array_t<float> out({py::ssize_t(tokens), py::ssize_t(2)});
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    rt.run_packed(ids.data(), segs.data(), tokens, cu.data(), batch, dst);
                }
                return out;
            },
            py::arg("input_ids"), py::arg("segment_ids"), py::arg("cu_seqlens"))
        .def_property_readonly("packed", &BertRuntime::packed)
        .def_property_readonly("token_capacity", &BertRuntime::token_capacity)
        .def_property_readonly("max_batch", &BertRuntime::max_batch)
        .def_property_readonly("max_seq", &BertRuntime::max_seq)
        .def_property_readonly("token_granularity", &BertRuntime::token_granularity)
        .def(
            "set_inputs",
            [](BertRuntime& rt, const IntArray& ids, const IntArray& segs, const IntArray& mask) {
                const auto [batch, seq] = BertRuntime::input_shape(shape_of(ids), shape_of(segs), shape_of(mask));
                py::gil_scoped_release release;
                rt.set_inputs(ids.data(), segs.data(), mask.data(), batch, seq);
            },
            py::arg("input_ids"), py::arg("segment_ids"), py::arg("input_mask"))
        .def("time_forward", &BertRuntime::time_forward, py::arg("batch"), py::arg("seq"), py::arg("iterations"),
             py::arg("warmup"), py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("profiles",
                               [](const BertRuntime& rt) {
                                   std::vector<std::pair<int, int>> out;
                                   for (const auto& p : rt.profiles()) out.emplace_back(p.batch, p.seq);
                                   return out;
                               })
        .def_property_readonly("header_json", [](const BertRuntime& rt) { return py::bytes(rt.header_json()); })
        .def_property_readonly("precision", &BertRuntime::precision)
        .def_property_readonly("engine_path", &BertRuntime::engine_path)
        .def_property_readonly("graph_enabled", &BertRuntime::graph_enabled)
        .def_property_readonly("device_memory_bytes", &BertRuntime::device_memory_bytes)
        .def_property_readonly("device", [](const BertRuntime& rt) { return device_dict(rt.device()); })
        .def_property_readonly("stats", [](const BertRuntime& rt) {
            const RuntimeStats s = rt.stats();
            py::dict d;
            d["weight_bytes"] = s.weight_bytes;
            d["activation_bytes"] = s.activation_bytes;
            d["activation_buffers"] = s.activation_buffers;
            d["io_bytes"] = s.io_bytes;
            d["workspace_bytes"] = s.workspace_bytes;
            d["total_bytes"] = s.total();
            d["graphs"] = s.graphs;
            d["gemm_fallbacks"] = s.gemm_fallbacks;
            return d;
        });

    m.def(
        "tune_gemms",
        [](const std::vector<py::tuple>& shapes, size_t workspace_bytes, int max_candidates, int iterations,
           bool extended_search, bool cold_weights) {
            std::vector<GemmShape> gs;
            for (const auto& t : shapes) {
                if (t.size() != 7 && t.size() != 8)
                    throw std::invalid_argument("tune_gemms: each shape is (m, n, k, dtype, epilogue, partials, "
                                                "layernorm_after[, residual])");
                GemmShape g{t[0].cast<int>(), t[1].cast<int>(), t[2].cast<int>(),
                            gemm_dtype_from_string(t[3].cast<std::string>()),
                            gemm_epilogue_from_string(t[4].cast<std::string>()), t[5].cast<int>()};
                g.layernorm_after = t[6].cast<bool>();
                g.residual = t.size() == 8 && t[7].cast<bool>();
                gs.push_back(g);
            }
            std::vector<GemmTuneResult> results;
            {
                py::gil_scoped_release release;
                results = tune_gemms(gs, workspace_bytes, max_candidates, iterations, extended_search, cold_weights);
            }
            py::list out;
            for (const auto& r : results) {
                py::dict d;
                d["algo"] = r.algo.to_ints();
                d["time_us"] = r.time_us;
                d["heuristic_time_us"] = r.heuristic_time_us;
                d["candidates"] = r.candidates;
                d["heuristic_candidates"] = r.heuristic_candidates;
                d["workspace_bytes"] = r.workspace_bytes;
                py::list timings;
                for (const auto& [algo, us] : r.timings) timings.append(py::make_tuple(algo.to_ints(), us));
                d["timings"] = timings;
                out.append(d);
            }
            return out;
        },
        py::arg("shapes"), py::arg("workspace_bytes") = size_t(32) << 20, py::arg("max_candidates") = 16,
        py::arg("iterations") = 20, py::arg("extended_search") = true, py::arg("cold_weights") = true,
        "Times cuBLASLt's heuristic candidates for each (m, n, k, 'fp16'|'fp32', 'none'|'bias'|'gelu_bias', "
        "partials (1, or > 1: split-K into fp32 partials), layernorm_after (time the skip_layernorm that "
        "consumes the product with it), residual (optional: the residual added in the epilogue, beta = 1)) and returns the fastest of each as {'algo': [9 ints], 'time_us', 'heuristic_time_us', 'candidates', "
        "'workspace_bytes', 'timings': [(algo, time_us) of every candidate that ran]}.");
    m.def("device_info", []() { return device_dict(current_device_info()); },
          "The current GPU: name, sm (e.g. 90), memory, CUDA and cuBLASLt versions. DeviceError without a GPU.");
    m.def("cublaslt_version", []() { return cublaslt_version(); });
}

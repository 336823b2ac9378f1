// build/perf: latency and throughput of a cuda engine, with demoBERT's perf options.
//
//   build/perf -e bert.engine -b 1 -b 128 -s 384 -i 200 -w 10 --enable_graph [--json out.json]
//
// For each batch size: random valid inputs (token ids in [1, vocab), question/passage segment
// ids, full-length masks), `-w` untimed passes, then `-i` passes each timed with CUDA events on the
// device (inputs already on the GPU, as demoBERT's perf). Prints mean, p50, p95, p99 latency and
// sequences/s, computed by infer_c/timing_stats.h (the same code perf.py uses).
// Exit status: 0 on success, 2 on bad options or input, 1 on any other failure.
#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bert_runtime.h"
#include "errors.h"
#include "timing_stats.h"

namespace {

struct Options {
    std::string engine;
    std::vector<int> batches;
    int seq = 0;
    int iterations = 200;
    int warmup = 10;
    bool enable_graph = false;
    bool op_times = false;
    unsigned seed = 12345;
    std::string json_path;
};

const char* kUsage =
    "usage: perf -e ENGINE [-b BATCH]... [-s SEQ] [-i ITERATIONS] [-w WARMUP] [--enable_graph] [--op-times] [--seed N] [--json FILE]\n"
    "  -e, --engine ENGINE          engine file built with builder.py --backend cuda\n"
    "  -b, --batch-size BATCH       batch size to time (repeatable; default: every profile of SEQ)\n"
    "  -s, --sequence-length SEQ    sequence length (default: the engine's, when it has one)\n"
    "  -i, --iterations N           timed passes per batch size (default 200)\n"
    "  -w, --warm-up-runs N         untimed passes first (default 10)\n"
    "  --enable_graph               replay CUDA graphs (as demoBERT's --enable_graph)\n"
    "  --op-times                   also print the GPU time of each op kind (eager passes with events)\n"
    "  --seed N                     seed of the random inputs (default 12345)\n"
    "  --json FILE                  also write the results as JSON\n";

int parse_int(const std::string& opt, const std::string& v, int lo) {
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > 1000000000)
        throw bertqa::UserError(opt + " needs an integer >= " + std::to_string(lo) + ", got '" + v + "'");
    return int(x);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw bertqa::UserError(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::cout << kUsage;
            std::exit(0);
        } else if (a == "-e" || a == "--engine") {
            o.engine = value();
        } else if (a == "-b" || a == "--batch-size") {
            o.batches.push_back(parse_int(a, value(), 1));
        } else if (a == "-s" || a == "--sequence-length") {
            o.seq = parse_int(a, value(), 1);
        } else if (a == "-i" || a == "--iterations") {
            o.iterations = parse_int(a, value(), 1);
        } else if (a == "-w" || a == "--warm-up-runs") {
            o.warmup = parse_int(a, value(), 0);
        } else if (a == "--enable_graph" || a == "--enable-graph") {
            o.enable_graph = true;
        } else if (a == "--op-times") {
            o.op_times = true;
        } else if (a == "--seed") {
            o.seed = unsigned(parse_int(a, value(), 0));
        } else if (a == "--json") {
            o.json_path = value();
        } else {
            throw bertqa::UserError("unknown option '" + a + "' (see perf --help)");
        }
    }
    if (o.engine.empty()) throw bertqa::UserError("no engine given: pass -e ENGINE (see perf --help)");
    return o;
}

// Device memory in use by this process beyond the CUDA context (0 if it cannot be read).
size_t device_memory_in_use(size_t free_at_start) {
    size_t free_now = 0, total = 0;
    if (cudaMemGetInfo(&free_now, &total) != cudaSuccess || free_now > free_at_start) return 0;
    return free_at_start - free_now;
}

int run(const Options& opt) {
    size_t free_at_start = 0, total_memory = 0;
    cudaFree(nullptr);  // create the context first, so it is not counted as the engine's memory
    cudaMemGetInfo(&free_at_start, &total_memory);
    bertqa::BertRuntime rt(opt.engine, opt.enable_graph);
    const auto& profiles = rt.profiles();
    int seq = opt.seq;
    if (seq == 0) {
        seq = profiles.front().seq;
        for (const auto& p : profiles)
            if (p.seq != seq)
                throw bertqa::UserError("the engine has several sequence lengths; choose one with -s");
    }
    std::vector<int> batches = opt.batches;
    if (batches.empty())
        for (const auto& p : profiles)
            if (p.seq == seq) batches.push_back(p.batch);
    if (batches.empty())
        throw bertqa::UserError("the engine has no profile of sequence length " + std::to_string(seq));

    const auto& cfg = rt.config();
    const auto& dev = rt.device();
    std::printf("engine %s: %s, %d layers, hidden %d, heads %d; GPU %s (sm_%d); CUDA graphs %s\n", opt.engine.c_str(),
                rt.precision().c_str(), cfg.num_layers, cfg.hidden_size, cfg.num_heads, dev.name.c_str(), dev.sm,
                opt.enable_graph ? "on" : "off (pass --enable_graph)");
    std::printf("%6s %5s %10s %10s %10s %10s %14s\n", "batch", "seq", "mean_ms", "p50_ms", "p95_ms", "p99_ms",
                "sequences/s");
    std::mt19937 rng(opt.seed);
    std::ostringstream js;
    js << "{\"engine\":\"" << opt.engine << "\",\"gpu\":\"" << dev.name << "\",\"precision\":\"" << rt.precision()
       << "\",\"enable_graph\":" << (opt.enable_graph ? "true" : "false") << ",\"results\":[";
    for (size_t bi = 0; bi < batches.size(); ++bi) {
        const int b = batches[bi];
        const size_t T = size_t(b) * size_t(seq);
        std::vector<int32_t> ids(T), segs(T), mask(T, 1);
        std::uniform_int_distribution<int32_t> tok(cfg.vocab_size > 1 ? 1 : 0, cfg.vocab_size - 1);
        for (size_t t = 0; t < T; ++t) {
            ids[t] = tok(rng);
            segs[t] = (cfg.type_vocab_size > 1 && int(t % size_t(seq)) >= seq / 3) ? 1 : 0;
        }
        rt.set_inputs(ids.data(), segs.data(), mask.data(), b, seq);
        const std::vector<double> ms = rt.time_forward(b, seq, opt.iterations, opt.warmup);
        const bertqa::TimingStats s = bertqa::compute_timing_stats(ms, b);
        std::printf("%6d %5d %10.3f %10.3f %10.3f %10.3f %14.1f\n", b, seq, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms,
                    s.sequences_per_s);
        if (opt.op_times) {
            double total = 0;
            const auto ops = rt.time_ops(b, seq, std::max(3, std::min(opt.iterations, 20)));
            for (const auto& kv : ops) total += kv.second;
            for (const auto& kv : ops)
                std::printf("        %-48s %9.3f ms %5.1f%%\n", kv.first.c_str(), kv.second, 100.0 * kv.second / total);
            std::printf("        %-48s %9.3f ms (eager, with an event around each op)\n", "sum", total);
        }
        std::fflush(stdout);
        js << (bi ? "," : "") << "{\"batch\":" << b << ",\"seq\":" << seq << ",\"iterations\":" << s.count
           << ",\"mean_ms\":" << s.mean_ms << ",\"p50_ms\":" << s.p50_ms << ",\"p95_ms\":" << s.p95_ms
           << ",\"p99_ms\":" << s.p99_ms << ",\"min_ms\":" << s.min_ms << ",\"max_ms\":" << s.max_ms
           << ",\"sequences_per_s\":" << s.sequences_per_s << "}";
    }
    // Peak use: everything stays allocated (buffers, workspace, captured graphs) until rt goes.
    const size_t in_use = device_memory_in_use(free_at_start);
    std::printf("device memory: %.1f MiB allocated by the engine, %.1f MiB in use by the process beyond the "
                "CUDA context\n", double(rt.device_memory_bytes()) / 1048576.0, double(in_use) / 1048576.0);
    js << "],\"engine_memory_bytes\":" << rt.device_memory_bytes() << ",\"process_memory_bytes\":" << in_use
       << "}\n";
    if (!opt.json_path.empty()) {
        std::FILE* f = std::fopen(opt.json_path.c_str(), "w");
        if (!f) throw bertqa::UserError("cannot write " + opt.json_path);
        const std::string text = js.str();
        std::fwrite(text.data(), 1, text.size(), f);
        std::fclose(f);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const bertqa::UserError& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

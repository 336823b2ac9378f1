// layernorm_check: correctness checks, then timings, of the memory-bound plugins
// embed_layernorm, skip_layernorm and bias_gelu (llm.c dev/cuda style: the CPU reference of the
// same math is in this file, accumulating in double).
//
// Checked variants (each against the CPU reference, on fresh random inputs, never zeros; a
// separate output is poisoned with NaN bytes (0xFF) before every launch; in-place and aliased
// outputs are restored from a pristine device copy of the input before every launch; every
// element is compared, |out - ref| <= atol + rtol |ref|, NaN never passes):
//   dtype          fp32 (atol 1e-5, rtol 1e-5), fp16 storage (atol 1e-5, rtol 2^-10 = 2 half-ulps)
//   hidden         96, 97 (odd: the scalar path), 200, 384, 768, 1024
//   width          97, 200, 384, 768, 1024, 1536, 3072, 4096 (bias_gelu)
//   tokens         1, 3, 384, 49152
//   embed_layernorm  padded (pos = t % seq) and packed (cu_seqlens of random lengths 0..512, empty
//                    sequences included; pos = t - cu_seqlens[b]); eps 1e-12 and 1e-5
//   skip_layernorm   no bias; bias; bias with out aliasing x; no bias with out aliasing residual;
//                    no residual (a plain LayerNorm of x);
//                    x as 2, 3 or 8 fp32 split-K partial products (with bias, out aliasing residual
//                    once; tokens up to 384, where the engine splits); the output head (two fp32
//                    logits per token from the row as stored, atol 1e-4 + rtol * sum |out_i w_i|,
//                    rtol 2^-10 + 1e-4 in fp16, 1e-4 in fp32) with the row stored or not, from x
//                    or from partials
//   bias_gelu        erf form and tanh form, in place
//   launch configs   the public launcher (default heuristic) and every configuration the tuning
//                    knob can select: max vectors per thread 1, 2, 4, 8 (LayerNorms), rows per
//                    thread 1, 2, 4, 8 (bias_gelu); the knobs are run on every size up to 64M
//                    elements (every LayerNorm size), the default on every size
//   also           argument checks throw std::invalid_argument; tokens = 0 is a no-op; each
//                  public launcher is captured into a CUDA graph (global capture mode, so a
//                  synchronising launcher would fail) and the replay is checked
// Exit status: 0 when every check passed, 1 otherwise (timings are then skipped).
//
// Timings (unless --no-bench): CUDA events around single launches, L2 flushed (a memset of twice
// the L2 size) before each, median of many; "hot" = per-launch time of a CUDA graph of 64
// back-to-back launches on the same (L2-resident when small) buffers, as in the engine's graph.
// GB/s counts the fewest bytes: each input read once, each output written once (embedding
// gathers: one word row per token, the distinct position and token-type rows, ids and weights).
// The ceiling is a 1 GiB cudaMemcpy device-to-device measured here (bytes read + written).
//
// usage: layernorm_check [--no-bench] [--sweep] [--quick] [--bench-only] [-v]
//   --sweep  also time every tuning configuration (max vectors per thread, rows per thread)
//   --quick  checks without the 49152-token sizes (for compute-sanitizer runs)
//   --bench-only  timings without the checks (tuning iterations only; the checks are the gate)
//   -v       print every check
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bert_plugins.h"
#include "layernorm_common.cuh"

using namespace bertqa;

#include "cuda_check.h"

static bool g_verbose = false;
static cudaStream_t g_stream;
static int g_checks = 0, g_failures = 0;

// ------------------------------------------------------------------------------------------------
// Host helpers: threads, random numbers, device buffers.

static unsigned n_threads() {
    static unsigned n = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
    return n;
}

template <class F>
static void parallel_for(size_t n, F f) {  // f(begin, end, part)
    size_t nt = std::min<size_t>(n_threads(), (n + 32767) / 32768);
    if (nt <= 1) {
        f(size_t(0), n, size_t(0));
        return;
    }
    std::vector<std::thread> ts;
    const size_t chunk = (n + nt - 1) / nt;
    for (size_t i = 0; i < nt; ++i) {
        const size_t b = i * chunk, e = std::min(n, b + chunk);
        if (b < e) ts.emplace_back(f, b, e, i);
    }
    for (auto& t : ts) t.join();
}

static uint64_t g_seed = 0x9E3779B97F4A7C15ull;
static uint64_t fresh_seed() { return g_seed += 0x632BE59BD9B4E019ull; }
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline float uni(uint64_t seed, size_t i) {  // [0, 1)
    return (float)(mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1)) >> 40) * (1.0f / 16777216.0f);
}
static inline float round_dt(DType dt, float x) {
    return dt == DType::kFloat16 ? __half2float(__float2half_rn(x)) : x;
}
static size_t esize(DType dt) { return dt == DType::kFloat16 ? 2 : 4; }
static const char* dname(DType dt) { return dt == DType::kFloat16 ? "fp16" : "fp32"; }

// n values uniform in [lo, hi) + offset(i), rounded to dt.
static std::vector<float> rand_vec(DType dt, size_t n, float lo, float hi,
                                   const std::function<float(size_t)>& offset = nullptr) {
    std::vector<float> v(n);
    const uint64_t s = fresh_seed();
    parallel_for(n, [&](size_t b, size_t e, size_t) {
        for (size_t i = b; i < e; ++i) v[i] = round_dt(dt, lo + (hi - lo) * uni(s, i) + (offset ? offset(i) : 0.f));
    });
    return v;
}
static std::vector<int32_t> rand_ints(size_t n, int lo, int hi) {  // [lo, hi)
    std::vector<int32_t> v(n);
    const uint64_t s = fresh_seed();
    for (size_t i = 0; i < n; ++i) v[i] = lo + (int)(uni(s, i) * (float)(hi - lo)) % (hi - lo);
    return v;
}

struct DBuf {
    void* p = nullptr;
    size_t bytes = 0;
    explicit DBuf(size_t b) : bytes(b) { CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(b, 16))); }
    ~DBuf() { cudaFree(p); }
    DBuf(const DBuf&) = delete;
    DBuf& operator=(const DBuf&) = delete;
};

static void upload(DType dt, const std::vector<float>& h, void* d) {
    if (dt == DType::kFloat32) {
        CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
        return;
    }
    std::vector<__half> t(h.size());
    parallel_for(h.size(), [&](size_t b, size_t e, size_t) {
        for (size_t i = b; i < e; ++i) t[i] = __float2half_rn(h[i]);
    });
    CUDA_CHECK(cudaMemcpy(d, t.data(), t.size() * 2, cudaMemcpyHostToDevice));
}
static void upload_ints(const std::vector<int32_t>& h, void* d) {
    CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
}
static std::vector<float> download(DType dt, const void* d, size_t n) {
    std::vector<float> h(n);
    if (dt == DType::kFloat32) {
        CUDA_CHECK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
        return h;
    }
    std::vector<__half> t(n);
    CUDA_CHECK(cudaMemcpy(t.data(), d, n * 2, cudaMemcpyDeviceToHost));
    parallel_for(n, [&](size_t b, size_t e, size_t) {
        for (size_t i = b; i < e; ++i) h[i] = __half2float(t[i]);
    });
    return h;
}
// NaN in fp32 and fp16. Everything a launch depends on goes through g_stream (a non-blocking
// stream does not wait for the legacy default stream), and run_launch synchronises the device
// before launching, so no preparation (uploads, poison, restores) can race the kernel.
static void poison(void* d, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(d, 0xFF, bytes, g_stream)); }
static void restore(void* dst, const void* src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream));
}

// ------------------------------------------------------------------------------------------------
// Comparison.

struct Tol {
    double atol, rtol;
};
static Tol tol_for(DType dt) { return dt == DType::kFloat16 ? Tol{1e-5, 1.0 / 1024} : Tol{1e-5, 1e-5}; }

static bool compare(const std::string& what, const std::vector<float>& out, const std::vector<float>& ref, Tol tol) {
    struct Part {
        size_t bad = 0, first = SIZE_MAX;
        double max_err = 0, e2 = 0, r2 = 0;
    };
    std::vector<Part> parts(n_threads() + 1);
    parallel_for(out.size(), [&](size_t b, size_t e, size_t k) {
        Part p;
        for (size_t i = b; i < e; ++i) {
            const double o = out[i], r = ref[i], d = std::fabs(o - r);
            if (!(d <= tol.atol + tol.rtol * std::fabs(r))) {
                if (p.bad++ == 0) p.first = i;
            }
            if (d > p.max_err || std::isnan(d)) p.max_err = std::isnan(d) ? INFINITY : d;
            p.e2 += (o - r) * (o - r);
            p.r2 += r * r;
        }
        parts[k] = p;
    });
    Part t;
    for (auto& p : parts) {
        t.bad += p.bad;
        t.first = std::min(t.first, p.first);
        t.max_err = std::max(t.max_err, p.max_err);
        t.e2 += p.e2;
        t.r2 += p.r2;
    }
    ++g_checks;
    const double rel = std::sqrt(t.e2 / std::max(t.r2, 1e-300));
    if (t.bad) {
        ++g_failures;
        printf("FAIL %s: %zu of %zu elements off; first at %zu: out %.8g ref %.8g; max err %.3g, rel L2 %.3g\n",
               what.c_str(), t.bad, out.size(), t.first, out[t.first], ref[t.first], t.max_err, rel);
        return false;
    }
    if (g_verbose) printf("ok   %s: max err %.3g, rel L2 %.3g\n", what.c_str(), t.max_err, rel);
    return true;
}

static void fail(const std::string& what, const std::string& why) {
    ++g_checks;
    ++g_failures;
    printf("FAIL %s: %s\n", what.c_str(), why.c_str());
}

// Run a launch, returning false (and recording a failure) on an exception or a CUDA error.
static bool run_launch(const std::string& what, const std::function<void()>& launch) {
    CUDA_CHECK(cudaDeviceSynchronize());  // uploads, poison and restores are complete
    try {
        launch();
    } catch (const std::exception& e) {
        fail(what, std::string("launcher threw: ") + e.what());
        return false;
    }
    const cudaError_t e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) {
        fprintf(stderr, "CUDA error after %s: %s\n", what.c_str(), cudaGetErrorString(e));
        exit(2);
    }
    return true;
}

static const int kKnobs[] = {0, 1, 2, 4, 8};  // 0 = the public launcher (default heuristic)
static const size_t kKnobSweepMaxElems = size_t(1) << 26;  // all LayerNorm sizes; bias_gelu up to 49152 x 1024

// ------------------------------------------------------------------------------------------------
// CPU references (double accumulation).

static void ref_layernorm_row(const double* v, int H, const float* g, const float* b, float eps, float* out) {
    double mean = 0;
    for (int i = 0; i < H; ++i) mean += v[i];
    mean /= H;
    double var = 0;
    for (int i = 0; i < H; ++i) var += (v[i] - mean) * (v[i] - mean);
    var /= H;
    const double rstd = 1.0 / std::sqrt(var + (double)eps);
    for (int i = 0; i < H; ++i) out[i] = (float)((v[i] - mean) * rstd * g[i] + b[i]);
}

static std::vector<float> ref_skip(const std::vector<float>& x, const std::vector<float>& r, const std::vector<float>* bias,
                                   const std::vector<float>& g, const std::vector<float>& b, int T, int H, float eps) {
    std::vector<float> out((size_t)T * H);
    parallel_for(T, [&](size_t rb, size_t re, size_t) {
        std::vector<double> v(H);
        for (size_t t = rb; t < re; ++t) {
            for (int i = 0; i < H; ++i)
                v[i] = (double)x[t * H + i] + (double)r[t * H + i] + (bias ? (double)(*bias)[i] : 0.0);
            ref_layernorm_row(v.data(), H, g.data(), b.data(), eps, out.data() + t * H);
        }
    });
    return out;
}

static double ref_gelu(double v, bool tanh_form) {
    if (tanh_form) return 0.5 * v * (1.0 + std::tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v)));
    return 0.5 * v * (1.0 + std::erf(v * 0.70710678118654752440));
}

// ------------------------------------------------------------------------------------------------
// skip_layernorm checks.

// partials > 0: x arrives as that many fp32 split-K partial products (alias must not be 1); the
// reference's x is their exact sum (double, rounded once to float).
// head 1: also the output head (two logits per token), 2: the head alone (out null, not stored).
// alias 3: no residual at all (a plain LayerNorm of x, as after a GEMM that added it; out its own).
static void check_skip(DType dt, int H, int T, bool with_bias, int alias /*0 none, 1 x, 2 residual, 3 no residual*/, float eps,
                       int partials = 0, int head = 0) {
    const size_t n = (size_t)T * H, es = esize(dt);
    std::vector<float> off = rand_vec(DType::kFloat32, T, -5.f, 5.f);  // per-row offsets: stress the variance
    std::vector<float> x, parts;
    if (partials == 0) {
        x = rand_vec(dt, n, -3.f, 3.f, [&](size_t i) { return off[i / H]; });
    } else {
        parts.resize((size_t)partials * n);
        for (int q = 0; q < partials; ++q) {
            auto pq = rand_vec(DType::kFloat32, n, -2.f, 2.f, [&](size_t i) { return off[i / H] / partials; });
            std::copy(pq.begin(), pq.end(), parts.begin() + (size_t)q * n);
        }
        x.assign(n, 0.f);
        for (size_t i = 0; i < n; ++i) {
            double v = 0;
            for (int q = 0; q < partials; ++q) v += parts[(size_t)q * n + i];
            x[i] = (float)v;
        }
    }
    auto r = rand_vec(dt, n, -2.f, 2.f);
    auto bias = rand_vec(dt, H, -1.f, 1.f);
    auto g = rand_vec(dt, H, 0.5f, 1.5f);
    auto b = rand_vec(dt, H, -0.5f, 0.5f);
    const bool no_residual = alias == 3;
    const auto ref = ref_skip(x, no_residual ? std::vector<float>(n, 0.f) : r, with_bias ? &bias : nullptr, g, b, T, H, eps);
    // The head's reference: the reference row rounded as stored, dotted in double.
    auto hw = rand_vec(dt, 2 * (size_t)H, -1.f, 1.f), hb = rand_vec(dt, 2, -1.f, 1.f);
    std::vector<float> href(head ? 2 * (size_t)T : 0), hmag(href.size());
    for (size_t t = 0; t < (head ? (size_t)T : 0); ++t)
        for (int j = 0; j < 2; ++j) {
            double acc = hb[j], mag = 0;
            for (int i = 0; i < H; ++i) {
                const double term = (double)round_dt(dt, ref[t * H + i]) * hw[(size_t)j * H + i];
                acc += term;
                mag += std::fabs(term);
            }
            href[2 * t + j] = (float)acc;
            hmag[2 * t + j] = (float)mag;
        }

    DBuf dx0(n * es), dr0(n * es), dx(n * es), dr(n * es), dout(n * es), dbias(H * es), dg(H * es), db(H * es),
        dparts(parts.size() * 4), dhw(2 * H * es), dhb(2 * es), dhout(head ? 2 * (size_t)T * 4 : 0);
    upload(dt, hw, dhw.p);
    upload(dt, hb, dhb.p);
    if (partials) upload(DType::kFloat32, parts, dparts.p);
    else upload(dt, x, dx0.p);
    upload(dt, r, dr0.p);
    upload(dt, bias, dbias.p);
    upload(dt, g, dg.p);
    upload(dt, b, db.p);
    for (int knob : kKnobs) {
        if (knob != 0 && n > kKnobSweepMaxElems) continue;
        if (!partials) restore(dx.p, dx0.p, n * es);
        restore(dr.p, dr0.p, n * es);
        void* out = head == 2 ? nullptr : alias == 1 ? dx.p : alias == 2 ? dr.p : dout.p;
        if (alias == 0 || alias == 3 || head == 2) poison(dout.p, n * es);
        if (head) poison(dhout.p, 2 * (size_t)T * 4);
        SkipLayerNormParams p{dt, partials ? nullptr : dx.p, no_residual ? nullptr : dr.p, with_bias ? dbias.p : nullptr, dg.p, db.p, out, T, H, eps,
                              partials ? static_cast<const float*>(dparts.p) : nullptr, partials};
        if (head) {
            p.head_weight = dhw.p;
            p.head_bias = dhb.p;
            p.head_out = static_cast<float*>(dhout.p);
        }
        char what[220];
        snprintf(what, sizeof what, "skip_layernorm %s H=%d T=%d bias=%d out=%s eps=%g partials=%d head=%d knob=%d",
                 dname(dt), H, T, (int)with_bias, head == 2 ? "none" : alias == 1 ? "x" : alias == 2 ? "residual" : alias == 3 ? "own, no residual" : "own",
                 eps, partials, head, knob);
        if (!run_launch(what, [&] {
                if (knob == 0) skip_layernorm(p, g_stream);
                else detail::skip_layernorm_tuned(p, g_stream, knob);
            }))
            continue;
        if (out) compare(what, download(dt, out, n), ref, tol_for(dt));
        if (head == 2) {  // the row must not have been stored
            const auto untouched = download(dt, dout.p, n);
            ++g_checks;
            if (!std::all_of(untouched.begin(), untouched.end(), [](float f) { return std::isnan(f); }))
                fail(what, "out is null but the row was stored");
        }
        if (head) {
            const double rtol = (dt == DType::kFloat16 ? 1.0 / 1024 : 0.0) + 1e-4;
            const auto got = download(DType::kFloat32, dhout.p, 2 * (size_t)T);
            ++g_checks;
            for (size_t i = 0; i < got.size(); ++i)
                if (!(std::fabs((double)got[i] - href[i]) <= 1e-4 + rtol * hmag[i])) {
                    char why[160];
                    snprintf(why, sizeof why, "head logit %zu: got %.7g, reference %.7g (bound %.3g)", i, got[i],
                             href[i], 1e-4 + rtol * hmag[i]);
                    fail(std::string(what) + " head", why);
                    break;
                }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// embed_layernorm checks.

struct EmbedCase {
    int vocab = 4096, max_pos = 512, types = 2;
    std::vector<int32_t> ids, seg, cu, pos;
    int seq = 0, batch = 0;
};

// Packed: random lengths in [0, 512] (about 1 in 8 empty) until the tokens are used up.
static EmbedCase make_embed_case(int T, bool packed) {
    EmbedCase c;
    c.ids = rand_ints(T, 0, c.vocab);
    c.seg = rand_ints(T, 0, c.types);
    c.pos.resize(T);
    if (!packed) {
        c.seq = T >= 49152 ? 384 : T >= 384 ? 128 : T;
        c.batch = T / c.seq;
        for (int t = 0; t < T; ++t) c.pos[t] = t % c.seq;
        return c;
    }
    const uint64_t s = fresh_seed();
    c.cu.push_back(0);
    int used = 0;
    for (size_t k = 0; used < T || c.cu.size() < 2; ++k) {
        int len = (uni(s, 2 * k) < 0.125f) ? 0 : 1 + (int)(uni(s, 2 * k + 1) * 512.f) % 512;
        len = std::min(len, T - used);
        used += len;
        c.cu.push_back(used);
    }
    if (uni(s, 999999) < 0.5f) c.cu.push_back(T);  // sometimes a trailing empty sequence
    c.batch = (int)c.cu.size() - 1;
    for (int b = 0; b < c.batch; ++b)
        for (int t = c.cu[b]; t < c.cu[b + 1]; ++t) c.pos[t] = t - c.cu[b];
    return c;
}

static void check_embed(DType dt, int H, int T, bool packed, float eps) {
    const size_t n = (size_t)T * H, es = esize(dt);
    EmbedCase c = make_embed_case(T, packed);
    auto word = rand_vec(dt, (size_t)c.vocab * H, -1.f, 1.f);
    auto pos = rand_vec(dt, (size_t)c.max_pos * H, -0.5f, 0.5f);
    auto type = rand_vec(dt, (size_t)c.types * H, -0.5f, 0.5f, [&](size_t i) { return i < (size_t)H ? 2.f : -1.f; });
    auto g = rand_vec(dt, H, 0.5f, 1.5f);
    auto b = rand_vec(dt, H, -0.5f, 0.5f);
    std::vector<float> ref(n);
    parallel_for(T, [&](size_t rb, size_t re, size_t) {
        std::vector<double> v(H);
        for (size_t t = rb; t < re; ++t) {
            for (int i = 0; i < H; ++i)
                v[i] = (double)word[(size_t)c.ids[t] * H + i] + (double)pos[(size_t)c.pos[t] * H + i] +
                       (double)type[(size_t)c.seg[t] * H + i];
            ref_layernorm_row(v.data(), H, g.data(), b.data(), eps, ref.data() + t * H);
        }
    });
    DBuf dids(T * 4), dseg(T * 4), dcu(std::max<size_t>(c.cu.size(), 1) * 4), dword(word.size() * es),
        dpos(pos.size() * es), dtype(type.size() * es), dg(H * es), db(H * es), dout(n * es);
    upload_ints(c.ids, dids.p);
    upload_ints(c.seg, dseg.p);
    if (packed) upload_ints(c.cu, dcu.p);
    upload(dt, word, dword.p);
    upload(dt, pos, dpos.p);
    upload(dt, type, dtype.p);
    upload(dt, g, dg.p);
    upload(dt, b, db.p);
    for (int knob : kKnobs) {
        if (knob != 0 && n > kKnobSweepMaxElems) continue;
        poison(dout.p, n * es);
        EmbedLayerNormParams p{dt, (const int32_t*)dids.p, (const int32_t*)dseg.p, dword.p, dpos.p, dtype.p,
                               dg.p, db.p, dout.p, T, packed ? 0 : c.seq, c.batch,
                               packed ? (const int32_t*)dcu.p : nullptr, H, eps};
        char what[200];
        snprintf(what, sizeof what, "embed_layernorm %s H=%d T=%d %s batch=%d eps=%g knob=%d", dname(dt), H, T,
                 packed ? "packed" : "padded", c.batch, eps, knob);
        if (!run_launch(what, [&] {
                if (knob == 0) embed_layernorm(p, g_stream);
                else detail::embed_layernorm_tuned(p, g_stream, knob);
            }))
            continue;
        compare(what, download(dt, dout.p, n), ref, tol_for(dt));
    }
}

// ------------------------------------------------------------------------------------------------
// bias_gelu checks.

static void check_gelu(DType dt, int W, int T, bool tanh_form) {
    const size_t n = (size_t)T * W, es = esize(dt);
    auto x = rand_vec(dt, n, -5.f, 5.f);
    auto bias = rand_vec(dt, W, -1.f, 1.f);
    std::vector<float> ref(n);
    parallel_for(n, [&](size_t b, size_t e, size_t) {
        for (size_t i = b; i < e; ++i) ref[i] = (float)ref_gelu((double)x[i] + (double)bias[i % W], tanh_form);
    });
    DBuf dx0(n * es), dx(n * es), dbias(W * es);
    upload(dt, x, dx0.p);
    upload(dt, bias, dbias.p);
    for (int knob : kKnobs) {
        if (knob != 0 && n > kKnobSweepMaxElems) continue;
        restore(dx.p, dx0.p, n * es);
        BiasGeluParams p{dt, dx.p, dbias.p, T, W, tanh_form};
        char what[200];
        snprintf(what, sizeof what, "bias_gelu %s W=%d T=%d %s knob=%d", dname(dt), W, T, tanh_form ? "tanh" : "erf",
                 knob);
        if (!run_launch(what, [&] {
                if (knob == 0) bias_gelu(p, g_stream);
                else detail::bias_gelu_tuned(p, g_stream, knob);
            }))
            continue;
        compare(what, download(dt, dx.p, n), ref, tol_for(dt));
    }
}

// ------------------------------------------------------------------------------------------------
// Argument checks, tokens = 0, and CUDA-graph capture of the public launchers.

template <class F>
static void expect_invalid(const std::string& what, F f) {
    ++g_checks;
    try {
        f();
    } catch (const std::invalid_argument&) {
        if (g_verbose) printf("ok   %s: std::invalid_argument\n", what.c_str());
        return;
    } catch (const std::exception& e) {
        ++g_failures;
        printf("FAIL %s: threw something other than std::invalid_argument: %s\n", what.c_str(), e.what());
        return;
    }
    ++g_failures;
    printf("FAIL %s: did not throw std::invalid_argument\n", what.c_str());
}

static void check_arguments() {
    DBuf a(1 << 20), b(1 << 20), c(1 << 20), d(1 << 20), e(1 << 20);
    const int32_t* ids = (const int32_t*)a.p;
    SkipLayerNormParams s{DType::kFloat16, a.p, b.p, nullptr, c.p, d.p, e.p, 4, 64, 1e-12f};
    auto S = [&](SkipLayerNormParams q) { skip_layernorm(q, g_stream); };
    { auto q = s; q.hidden = 0; expect_invalid("skip hidden=0", [&] { S(q); }); }
    { auto q = s; q.tokens = -1; expect_invalid("skip tokens=-1", [&] { S(q); }); }
    { auto q = s; q.x = nullptr; expect_invalid("skip x=null", [&] { S(q); }); }
    { auto q = s; q.eps = NAN; expect_invalid("skip eps=nan", [&] { S(q); }); }
    { auto q = s; q.dtype = (DType)7; expect_invalid("skip dtype=7", [&] { S(q); }); }
    { auto q = s; q.hidden = 1 << 20; expect_invalid("skip hidden=2^20", [&] { S(q); }); }
    { auto q = s; q.partials = (const float*)e.p; q.partial_count = 2; expect_invalid("skip x and partials", [&] { S(q); }); }
    { auto q = s; q.x = nullptr; q.partials = (const float*)a.p; q.partial_count = 1; expect_invalid("skip partials=1", [&] { S(q); }); }
    { auto q = s; q.x = nullptr; q.partials = (const float*)a.p; q.partial_count = 17; expect_invalid("skip partials=17", [&] { S(q); }); }
    { auto q = s; q.partial_count = 2; expect_invalid("skip partial_count without partials", [&] { S(q); }); }
    { auto q = s; q.head_weight = a.p; expect_invalid("skip head without bias and out", [&] { S(q); }); }
    { auto q = s; q.head_out = (float*)e.p; expect_invalid("skip head_out without weight", [&] { S(q); }); }
    { auto q = s; q.out = nullptr; expect_invalid("skip out=null without head", [&] { S(q); }); }
    { auto q = s; q.head_weight = a.p; q.head_bias = b.p; q.head_out = (float*)((char*)e.p + 4);
      expect_invalid("skip head_out misaligned", [&] { S(q); }); }
    EmbedLayerNormParams m{DType::kFloat32, ids, ids, b.p, c.p, d.p, e.p, e.p, a.p, 6, 3, 2, nullptr, 64, 1e-12f};
    auto M = [&](EmbedLayerNormParams q) { embed_layernorm(q, g_stream); };
    { auto q = m; q.tokens = 7; expect_invalid("embed padded tokens!=batch*seq", [&] { M(q); }); }
    { auto q = m; q.seq = 0; q.batch = 0; q.tokens = 0; expect_invalid("embed padded seq=0", [&] { M(q); }); }
    { auto q = m; q.cu_seqlens = ids; q.batch = 0; expect_invalid("embed packed batch=0", [&] { M(q); }); }
    { auto q = m; q.word = nullptr; expect_invalid("embed word=null", [&] { M(q); }); }
    BiasGeluParams gp{DType::kFloat16, a.p, b.p, 4, 64, false};
    auto G = [&](BiasGeluParams q) { bias_gelu(q, g_stream); };
    { auto q = gp; q.width = 0; expect_invalid("gelu width=0", [&] { G(q); }); }
    { auto q = gp; q.bias = nullptr; expect_invalid("gelu bias=null", [&] { G(q); }); }
    { auto q = gp; q.tokens = -5; expect_invalid("gelu tokens=-5", [&] { G(q); }); }
    // tokens = 0 launches nothing and throws nothing, even with null data pointers.
    ++g_checks;
    try {
        auto q = s; q.tokens = 0; q.x = q.residual = nullptr; q.out = nullptr; S(q);
        auto r = m; r.tokens = 0; r.batch = 0; r.input_ids = nullptr; M(r);
        auto t = gp; t.tokens = 0; t.x = nullptr; G(t);
        CUDA_CHECK(cudaStreamSynchronize(g_stream));
    } catch (const std::exception& ex) {
        ++g_failures;
        printf("FAIL tokens=0: threw %s\n", ex.what());
    }
}

// Capture a launch into a graph in global capture mode (any synchronising call inside the
// launcher breaks the capture), replay it, and return whether all went well.
static bool capture_and_replay(const std::string& what, const std::function<void()>& launch) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeGlobal));
    try {
        launch();
    } catch (const std::exception& e) {
        cudaStreamEndCapture(g_stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        fail(what, std::string("threw during capture: ") + e.what());
        return false;
    }
    cudaError_t err = cudaStreamEndCapture(g_stream, &graph);
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
    if (err == cudaSuccess) err = cudaGraphLaunch(exec, g_stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(g_stream);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
        cudaGetLastError();
        fail(what, std::string("graph capture/replay failed: ") + cudaGetErrorString(err));
        return false;
    }
    return true;
}

static void check_graphs() {
    const DType dt = DType::kFloat16;
    const int T = 384, H = 1024, W = 4096;
    const size_t n = (size_t)T * H, es = 2;
    {  // skip_layernorm
        auto x = rand_vec(dt, n, -3.f, 3.f), r = rand_vec(dt, n, -2.f, 2.f);
        auto g = rand_vec(dt, H, 0.5f, 1.5f), b = rand_vec(dt, H, -0.5f, 0.5f);
        const auto ref = ref_skip(x, r, nullptr, g, b, T, H, 1e-12f);
        DBuf dx(n * es), dr(n * es), dg(H * es), db(H * es), dout(n * es);
        upload(dt, x, dx.p); upload(dt, r, dr.p); upload(dt, g, dg.p); upload(dt, b, db.p);
        poison(dout.p, n * es);
        SkipLayerNormParams p{dt, dx.p, dr.p, nullptr, dg.p, db.p, dout.p, T, H, 1e-12f};
        if (capture_and_replay("graph skip_layernorm", [&] { skip_layernorm(p, g_stream); }))
            compare("graph skip_layernorm fp16 H=1024 T=384", download(dt, dout.p, n), ref, tol_for(dt));
    }
    {  // embed_layernorm, packed
        EmbedCase c = make_embed_case(T, true);
        auto word = rand_vec(dt, (size_t)c.vocab * H, -1.f, 1.f), pos = rand_vec(dt, (size_t)c.max_pos * H, -.5f, .5f);
        auto type = rand_vec(dt, (size_t)c.types * H, -.5f, .5f);
        auto g = rand_vec(dt, H, 0.5f, 1.5f), b = rand_vec(dt, H, -0.5f, 0.5f);
        std::vector<float> ref(n);
        std::vector<double> v(H);
        for (int t = 0; t < T; ++t) {
            for (int i = 0; i < H; ++i)
                v[i] = (double)word[(size_t)c.ids[t] * H + i] + pos[(size_t)c.pos[t] * H + i] + type[(size_t)c.seg[t] * H + i];
            ref_layernorm_row(v.data(), H, g.data(), b.data(), 1e-12f, ref.data() + (size_t)t * H);
        }
        DBuf dids(T * 4), dseg(T * 4), dcu(c.cu.size() * 4), dword(word.size() * es), dpos(pos.size() * es),
            dtype(type.size() * es), dg(H * es), db(H * es), dout(n * es);
        upload_ints(c.ids, dids.p); upload_ints(c.seg, dseg.p); upload_ints(c.cu, dcu.p);
        upload(dt, word, dword.p); upload(dt, pos, dpos.p); upload(dt, type, dtype.p);
        upload(dt, g, dg.p); upload(dt, b, db.p);
        poison(dout.p, n * es);
        EmbedLayerNormParams p{dt, (const int32_t*)dids.p, (const int32_t*)dseg.p, dword.p, dpos.p, dtype.p, dg.p,
                               db.p, dout.p, T, 0, c.batch, (const int32_t*)dcu.p, H, 1e-12f};
        if (capture_and_replay("graph embed_layernorm", [&] { embed_layernorm(p, g_stream); }))
            compare("graph embed_layernorm fp16 H=1024 T=384 packed", download(dt, dout.p, n), ref, tol_for(dt));
    }
    {  // bias_gelu
        const size_t m = (size_t)T * W;
        auto x = rand_vec(dt, m, -5.f, 5.f), bias = rand_vec(dt, W, -1.f, 1.f);
        std::vector<float> ref(m);
        for (size_t i = 0; i < m; ++i) ref[i] = (float)ref_gelu((double)x[i] + bias[i % W], false);
        DBuf dx(m * es), dbias(W * es);
        upload(dt, x, dx.p); upload(dt, bias, dbias.p);
        BiasGeluParams p{dt, dx.p, dbias.p, T, W, false};
        if (capture_and_replay("graph bias_gelu", [&] { bias_gelu(p, g_stream); }))
            compare("graph bias_gelu fp16 W=4096 T=384 erf", download(dt, dx.p, m), ref, tol_for(dt));
    }
}

// ------------------------------------------------------------------------------------------------
// Timing.

static DBuf* g_flush = nullptr;
static double g_copy_gbps = 0;

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.f : v[v.size() / 2];
}

// Median microseconds of single launches, L2 flushed before each.
static float time_cold_us(const std::function<void()>& launch, int reps) {
    CUDA_CHECK(cudaDeviceSynchronize());
    for (int i = 0; i < 3; ++i) launch();
    std::vector<cudaEvent_t> ev(2 * reps);
    for (auto& e : ev) CUDA_CHECK(cudaEventCreate(&e));
    for (int i = 0; i < reps; ++i) {
        CUDA_CHECK(cudaMemsetAsync(g_flush->p, i & 0xFF, g_flush->bytes, g_stream));
        CUDA_CHECK(cudaEventRecord(ev[2 * i], g_stream));
        launch();
        CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], g_stream));
    }
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; ++i) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    for (auto& e : ev) CUDA_CHECK(cudaEventDestroy(e));
    return median(ms) * 1000.f;
}

// Per-launch microseconds inside a CUDA graph of `per_graph` back-to-back launches (median of reps).
static float time_hot_us(const std::function<void()>& launch, int per_graph = 64, int reps = 15) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < per_graph; ++i) launch();
    CUDA_CHECK(cudaStreamEndCapture(g_stream, &graph));
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; ++i) {
        CUDA_CHECK(cudaEventRecord(a, g_stream));
        CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
        CUDA_CHECK(cudaEventRecord(b, g_stream));
        CUDA_CHECK(cudaEventSynchronize(b));
        CUDA_CHECK(cudaEventElapsedTime(&ms[i], a, b));
    }
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    return median(ms) * 1000.f / per_graph;
}

static double measure_copy_gbps() {
    const size_t bytes = size_t(1) << 30;
    DBuf src(bytes), dst(bytes);
    CUDA_CHECK(cudaMemset(src.p, 0x5A, bytes));
    auto launch = [&] { CUDA_CHECK(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, g_stream)); };
    const float us = time_cold_us(launch, 20);
    return 2.0 * bytes / (us * 1e-6) / 1e9;
}

struct Row {
    std::string kernel, dtype, shape, knob;
    float cold_us, hot_us;
    double bytes;
};
static std::vector<Row> g_rows;

static void record(const std::string& kernel, DType dt, const std::string& shape, const std::string& knob,
                   double bytes, const std::function<void()>& launch, bool hot) {
    const int reps = bytes > 200e6 ? 30 : bytes > 20e6 ? 60 : 200;
    Row r{kernel, dname(dt), shape, knob, time_cold_us(launch, reps), hot ? time_hot_us(launch) : 0.f, bytes};
    g_rows.push_back(r);
}

static void print_rows(const char* title) {
    printf("\n%s (copy ceiling %.0f GB/s, read + write)\n", title, g_copy_gbps);
    printf("%-16s %-5s %-22s %-6s %10s %9s %7s %10s\n", "kernel", "dtype", "shape", "knob", "cold us", "GB/s", "%copy",
           "hot us");
    for (const auto& r : g_rows) {
        const double gbps = r.bytes / (r.cold_us * 1e-6) / 1e9;
        char hot[32] = "-";
        if (r.hot_us > 0) snprintf(hot, sizeof hot, "%.2f", r.hot_us);
        printf("%-16s %-5s %-22s %-6s %10.2f %9.0f %6.1f%% %10s\n", r.kernel.c_str(), r.dtype.c_str(), r.shape.c_str(),
               r.knob.c_str(), r.cold_us, gbps, 100.0 * gbps / g_copy_gbps, hot);
    }
    g_rows.clear();
}

// One timing case per kernel/shape; knobs: {0} for the default, or the sweep list.
static void bench_skip(DType dt, int H, int T, const std::vector<int>& knobs) {
    const size_t n = (size_t)T * H, es = esize(dt);
    DBuf dx(n * es), dr(n * es), dout(n * es), dg(H * es), db(H * es);
    upload(dt, rand_vec(dt, n, -3.f, 3.f), dx.p);
    upload(dt, rand_vec(dt, n, -2.f, 2.f), dr.p);
    upload(dt, rand_vec(dt, H, 0.5f, 1.5f), dg.p);
    upload(dt, rand_vec(dt, H, -0.5f, 0.5f), db.p);
    SkipLayerNormParams p{dt, dx.p, dr.p, nullptr, dg.p, db.p, dout.p, T, H, 1e-12f};
    const double bytes = 3.0 * n * es + 2.0 * H * es;
    for (int k : knobs)
        record("skip_layernorm", dt, std::to_string(T) + "x" + std::to_string(H), k ? std::to_string(k) : "auto",
               bytes, [&] { detail::skip_layernorm_tuned(p, g_stream, k); }, T <= 4096);
}

// x as `count` fp32 split-K partials (what a small-batch linear hands the LayerNorm).
static void bench_skip_partials(DType dt, int H, int T, int count) {
    const size_t n = (size_t)T * H, es = esize(dt);
    DBuf dparts((size_t)count * n * 4), dr(n * es), dout(n * es), dbias(H * es), dg(H * es), db(H * es);
    upload(DType::kFloat32, rand_vec(DType::kFloat32, (size_t)count * n, -1.f, 1.f), dparts.p);
    upload(dt, rand_vec(dt, n, -2.f, 2.f), dr.p);
    upload(dt, rand_vec(dt, H, -1.f, 1.f), dbias.p);
    upload(dt, rand_vec(dt, H, 0.5f, 1.5f), dg.p);
    upload(dt, rand_vec(dt, H, -0.5f, 0.5f), db.p);
    SkipLayerNormParams p{dt, nullptr, dr.p, dbias.p, dg.p, db.p, dout.p, T, H, 1e-12f,
                          static_cast<const float*>(dparts.p), count};
    const double bytes = 4.0 * count * n + 2.0 * n * es + 3.0 * H * es;
    record("skip_ln+partials", dt, std::to_string(T) + "x" + std::to_string(H) + " p" + std::to_string(count), "auto",
           bytes, [&] { skip_layernorm(p, g_stream); }, true);
}

static void bench_embed(DType dt, int H, int T, bool packed, const std::vector<int>& knobs) {
    const size_t n = (size_t)T * H, es = esize(dt);
    const int vocab = 30522, max_pos = 512, types = 2;
    std::vector<int32_t> ids = rand_ints(T, 0, vocab), seg = rand_ints(T, 0, types), cu;
    int seq = 0, batch = 0;
    if (packed) {
        // BERT-like packed batch: sequences of 128..384 tokens.
        const uint64_t s = fresh_seed();
        cu.push_back(0);
        for (size_t k = 0; cu.back() < T; ++k) cu.push_back(std::min(T, cu.back() + 128 + (int)(uni(s, k) * 257.f)));
        batch = (int)cu.size() - 1;
    } else {
        seq = T >= 384 ? 384 : T;
        batch = T / seq;
    }
    DBuf dids(T * 4), dseg(T * 4), dcu(std::max<size_t>(cu.size(), 1) * 4), dword((size_t)vocab * H * es),
        dpos((size_t)max_pos * H * es), dtype((size_t)types * H * es), dg(H * es), db(H * es), dout(n * es);
    upload_ints(ids, dids.p);
    upload_ints(seg, dseg.p);
    if (packed) upload_ints(cu, dcu.p);
    upload(dt, rand_vec(dt, (size_t)vocab * H, -1.f, 1.f), dword.p);
    upload(dt, rand_vec(dt, (size_t)max_pos * H, -.5f, .5f), dpos.p);
    upload(dt, rand_vec(dt, (size_t)types * H, -.5f, .5f), dtype.p);
    upload(dt, rand_vec(dt, H, 0.5f, 1.5f), dg.p);
    upload(dt, rand_vec(dt, H, -0.5f, 0.5f), db.p);
    EmbedLayerNormParams p{dt, (const int32_t*)dids.p, (const int32_t*)dseg.p, dword.p, dpos.p, dtype.p, dg.p, db.p,
                           dout.p, T, seq, batch, packed ? (const int32_t*)dcu.p : nullptr, H, 1e-12f};
    const int distinct_pos = packed ? std::min(T, 384) : seq;
    const double bytes = 2.0 * n * es + (double)(distinct_pos + types + 2) * H * es + 8.0 * T +
                         (packed ? 4.0 * (batch + 1) : 0.0);
    for (int k : knobs)
        record("embed_layernorm", dt,
               std::to_string(T) + "x" + std::to_string(H) + (packed ? " packed" : " padded"),
               k ? std::to_string(k) : "auto", bytes, [&] { detail::embed_layernorm_tuned(p, g_stream, k); },
               T <= 4096);
}

static void bench_gelu(DType dt, int W, int T, bool tanh_form, const std::vector<int>& knobs) {
    const size_t n = (size_t)T * W, es = esize(dt);
    DBuf dx(n * es), dbias(W * es);
    upload(dt, rand_vec(dt, n, -5.f, 5.f), dx.p);
    upload(dt, rand_vec(dt, W, -1.f, 1.f), dbias.p);
    BiasGeluParams p{dt, dx.p, dbias.p, T, W, tanh_form};
    const double bytes = 2.0 * n * es + (double)W * es;
    for (int k : knobs)
        record("bias_gelu", dt, std::to_string(T) + "x" + std::to_string(W) + (tanh_form ? " tanh" : " erf"),
               k ? std::to_string(k) : "auto", bytes, [&] { detail::bias_gelu_tuned(p, g_stream, k); }, T <= 4096);
}

// ------------------------------------------------------------------------------------------------

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);  // line-buffered: a log cut short still holds what ran
    bool bench = true, sweep = false, quick = false, bench_only = false;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--no-bench")) bench = false;
        else if (!strcmp(argv[i], "--sweep")) sweep = true;
        else if (!strcmp(argv[i], "-v")) g_verbose = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--bench-only")) bench_only = true;
        else {
            fprintf(stderr, "usage: %s [--no-bench] [--sweep] [--quick] [--bench-only] [-v]\n", argv[0]);
            return 2;
        }
    }
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    printf("device: %s, %d SMs, L2 %d MB, CPU threads for references: %u\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize >> 20, n_threads());
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));

    const DType dts[] = {DType::kFloat32, DType::kFloat16};
    const int hiddens[] = {96, 97, 200, 384, 768, 1024};
    const int widths[] = {97, 200, 384, 768, 1024, 1536, 3072, 4096};
    std::vector<int> tokens = {1, 3, 384, 49152};
    if (quick) tokens.pop_back();

    if (!bench_only) {
        check_arguments();
        printf("argument checks: %d checks, %d failed\n", g_checks, g_failures);
        int c0 = g_checks, f0 = g_failures;
        for (DType dt : dts)
            for (int H : hiddens)
                for (int T : tokens) {
                    check_skip(dt, H, T, false, 0, 1e-12f);
                    check_skip(dt, H, T, true, 0, 1e-5f);
                    check_skip(dt, H, T, true, 1, 1e-12f);
                    check_skip(dt, H, T, false, 2, 1e-12f);
                    check_skip(dt, H, T, false, 3, 1e-12f);  // the residual added by the GEMM before
                    if (T <= 384)  // split-K runs at small batches only
                        for (int count : {2, 3, 8}) check_skip(dt, H, T, true, count == 3 ? 2 : 0, 1e-12f, count);
                    // The output head (the last LayerNorm of the engine): row stored or not, x or partials.
                    check_skip(dt, H, T, false, 2, 1e-12f, 0, 1);
                    check_skip(dt, H, T, false, 0, 1e-12f, 0, 2);
                    if (T <= 384) check_skip(dt, H, T, true, 0, 1e-12f, 4, 2);
                }
        printf("skip_layernorm: %d launches checked, %d failed\n", g_checks - c0, g_failures - f0);
        c0 = g_checks, f0 = g_failures;
        for (DType dt : dts)
            for (int H : hiddens)
                for (int T : tokens) {
                    check_embed(dt, H, T, false, 1e-12f);
                    check_embed(dt, H, T, true, (T & 1) ? 1e-5f : 1e-12f);
                }
        printf("embed_layernorm: %d launches checked, %d failed\n", g_checks - c0, g_failures - f0);
        c0 = g_checks, f0 = g_failures;
        for (DType dt : dts)
            for (int W : widths)
                for (int T : tokens) {
                    check_gelu(dt, W, T, false);
                    check_gelu(dt, W, T, true);
                }
        printf("bias_gelu: %d launches checked, %d failed\n", g_checks - c0, g_failures - f0);
        c0 = g_checks, f0 = g_failures;
        check_graphs();
        printf("graph capture: %d checks, %d failed\n", g_checks - c0, g_failures - f0);
        printf("TOTAL: %d checks, %d failed\n", g_checks, g_failures);
        if (g_failures) {
            printf("FAILED\n");
            return 1;
        }
        if (!bench) return 0;
    }

    g_flush = new DBuf(std::max<size_t>(2 * (size_t)prop.l2CacheSize, 64 << 20));
    g_copy_gbps = measure_copy_gbps();
    printf("\ncudaMemcpy D2D 1 GiB: %.0f GB/s (read + write)\n", g_copy_gbps);

    if (sweep) {
        const std::vector<int> knobs = {1, 2, 4, 8};
        for (DType dt : dts)
            for (int T : {384, 49152}) bench_skip(dt, 1024, T, knobs);
        print_rows("sweep: skip_layernorm, knob = max vectors per thread");
        for (DType dt : dts)
            for (int T : {384, 49152}) bench_embed(dt, 1024, T, false, knobs);
        print_rows("sweep: embed_layernorm, knob = max vectors per thread");
        for (DType dt : dts)
            for (int T : {384, 49152}) bench_gelu(dt, 4096, T, false, knobs);
        print_rows("sweep: bias_gelu, knob = rows per thread");
    }

    const std::vector<int> def = {0};
    for (DType dt : dts)
        for (int H : {768, 1024})
            for (int T : {384, 49152}) bench_embed(dt, H, T, false, def);
    for (DType dt : dts) bench_embed(dt, 1024, 49152, true, def);
    for (DType dt : dts)
        for (int H : {768, 1024})
            for (int T : {384, 49152}) bench_skip(dt, H, T, def);
    for (int count : {2, 4, 8}) {
        bench_skip_partials(DType::kFloat16, 768, 128, count);
        bench_skip_partials(DType::kFloat16, 1024, 384, count);
    }
    for (DType dt : dts)
        for (int W : {3072, 4096})
            for (int T : {384, 49152}) bench_gelu(dt, W, T, false, def);
    for (DType dt : dts) bench_gelu(dt, 4096, 49152, true, def);
    print_rows("default configurations");
    delete g_flush;
    CUDA_CHECK(cudaStreamDestroy(g_stream));
    return 0;
}

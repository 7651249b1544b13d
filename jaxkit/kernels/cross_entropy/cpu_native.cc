// Per-row cross-entropy on CPU, exposed to JAX through the typed XLA FFI.
//
// Part of jaxkit (jaxkit/kernels/cross_entropy). Compiled at first use by
// cpu_native.py with `${CXX:-g++} -O3 -march=native -fno-trapping-math
// -std=c++17 -shared -fPIC` against the headers of the installed jaxlib
// (jax.ffi.include_dir()).
//
// Two handlers, both over logits viewed as [rows, V] (every leading dim
// flattened; rows = labels.size()), f32 or bf16 logits, int32 labels:
//
//   jaxkit_cross_entropy_fwd:  loss = log(sum_k exp(z_k - m)) + (m - z_y),
//       m the row max; also returns the residuals m and r = log(sum ...),
//       so the backward needs no max pass.
//   jaxkit_cross_entropy_bwd:  dz = g * (exp((z - m) - r) - onehot(y)), in
//       the logits' dtype.
//
// A label outside [0, V) gives NaN (loss and gradient row); nothing is read
// out of bounds. NaN logits give NaN; rows whose max is +-inf follow
// jax.nn.logsumexp (no shift). The forward makes two passes over each row
// (max, then exp-sum from L2) while prefetching the next row, so the logits
// are streamed from memory about once; the backward makes one. exp is
// 2^y = p(f) 2^n with a degree-5 polynomial p (relative error < 2e-7 in
// float32). Rows are split into chunks run on XLA's intra-op thread pool
// (the calling thread works too). With AVX-512 (F, BW, DQ, VL) the rows use
// intrinsics; otherwise GNU vector extensions (8 lanes: AVX2, SSE, NEON).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "xla/ffi/api/ffi.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__)
#include <immintrin.h>
#define JAXKIT_CE_AVX512 1
#endif

namespace ffi = xla::ffi;

namespace {

constexpr float kLog2e = 1.4426950408889634f;
// Near-minimax degree-5 polynomials for 2^f with p(0) = 1 exactly (so a
// single class gives a loss of exactly 0), fitted with Lawson iterations on
// Chebyshev nodes; relative error 8e-8 / 9e-8 in exact arithmetic, 1.7e-7 /
// 1.9e-7 evaluated in float32:
//   on [0, 1) (AVX-512: f = y - floor(y), one VREDUCEPS) ...
constexpr float kP0[6] = {0x1.0p+0f,       0x1.62e4bap-1f,  0x1.ebdb56p-3f,
                          0x1.c91ce6p-5f,  0x1.277856p-7f,  0x1.e974fap-10f};
//   ... and on [-1/2, 1/2] (portable: f = y - round(y)).
constexpr float kPh[6] = {0x1.0p+0f,       0x1.62e42ap-1f,  0x1.ebf9bcp-3f,
                          0x1.c6b752p-5f,  0x1.3cea88p-7f,  0x1.5bba14p-10f};
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------
// Scalar pieces (also the portable row loops).
// ---------------------------------------------------------------------------

inline float ToF32(float x) { return x; }

inline float ToF32(uint16_t bf16) {
  uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

inline void FromF32(float x, float* out) { *out = x; }

inline void FromF32(float x, uint16_t* out) {  // round to nearest even
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (bits >> 16) | 0x40u;
  *out = static_cast<uint16_t>(
      (bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// exp(x) for any float x: exact 0 below -87, inf above 88.7, NaN stays NaN
// (comparisons with NaN are false). 2^y = p(y - n) 2^n with n = round(y).
// Written for a scalar or a GNU vector type VF (with its integer twin VU).
template <typename VF, typename VU>
inline VF ExpGeneric(VF x) {
  VF xc = x < -87.0f ? VF{} - 87.0f : x;
  xc = xc > 88.0f ? VF{} + 88.0f : xc;
  const VF y = xc * kLog2e;
  const VF t = y + 12582912.0f;  // 1.5 * 2^23: rounds y to an integer n
  const VF n = t - 12582912.0f;
  const VF f = y - n;
  VF p = VF{} + kPh[5];
  for (int i = 4; i >= 0; --i) p = p * f + kPh[i];
  VU tbits;
  std::memcpy(&tbits, &t, sizeof(tbits));
  // The low bits of t hold n + 2^22; n is in [-126, 127] here.
  const VU ebits = (tbits - 0x4b400000u + 127u) << 23;
  VF scale;
  std::memcpy(&scale, &ebits, sizeof(scale));
  VF r = p * scale;
  r = x < -87.0f ? VF{} : r;
  r = x > 88.72f ? VF{} + kInf : r;
  return r;
}

inline float ExpScalar(float x) { return ExpGeneric<float, uint32_t>(x); }

// Prefetches the cache line at p into L2 (read). The row kernels prefetch the
// next row while this row's exps run, so that its (memory-bound) max pass
// overlaps with this row's arithmetic.
inline void PrefetchL2(const void* p) { __builtin_prefetch(p, 0, 2); }

// ---------------------------------------------------------------------------
// Portable rows: GNU vector extensions (GCC, Clang), 8 lanes; the compiler
// maps them to AVX2 / SSE / NEON.
// ---------------------------------------------------------------------------

typedef float VF8 __attribute__((vector_size(32)));
typedef uint32_t VU8 __attribute__((vector_size(32)));
typedef uint16_t VH8 __attribute__((vector_size(16)));
constexpr int64_t kW = 8;

inline VF8 LoadV(const float* p) {
  VF8 x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}

inline VF8 LoadV(const uint16_t* p) {
  VH8 h;
  std::memcpy(&h, p, sizeof(h));
  const VU8 bits = __builtin_convertvector(h, VU8) << 16;
  VF8 x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

inline void StoreV(float* p, VF8 x) { std::memcpy(p, &x, sizeof(x)); }

inline void StoreV(uint16_t* p, VF8 x) {  // round to nearest even
  VU8 bits;
  std::memcpy(&bits, &x, sizeof(bits));
  VU8 rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  rounded = (bits & 0x7fffffffu) > 0x7f800000u ? (bits >> 16) | 0x40u
                                                : rounded;
  const VH8 h = __builtin_convertvector(rounded, VH8);
  std::memcpy(p, &h, sizeof(h));
}

template <typename T>
float RowMaxPortable(const T* z, int64_t v) {
  // x > acc is false for NaN: NaN is skipped here; the exp pass propagates it.
  VF8 a0 = VF8{} - kInf, a1 = a0;
  int64_t k = 0;
  for (; k + 2 * kW <= v; k += 2 * kW) {
    const VF8 x0 = LoadV(z + k), x1 = LoadV(z + k + kW);
    a0 = x0 > a0 ? x0 : a0;
    a1 = x1 > a1 ? x1 : a1;
  }
  a0 = a1 > a0 ? a1 : a0;
  float m = -kInf;
  for (int j = 0; j < kW; ++j) m = a0[j] > m ? a0[j] : m;
  for (; k < v; ++k) {
    const float x = ToF32(z[k]);
    m = x > m ? x : m;
  }
  return m;
}

template <typename T>
float RowSumExpPortable(const T* z, int64_t v, float m, const T* next) {
  VF8 a0 = VF8{}, a1 = a0;
  int64_t k = 0;
  for (; k + 2 * kW <= v; k += 2 * kW) {
    if (next != nullptr) PrefetchL2(next + k);  // 16 elements: <= 1 line
    a0 += ExpGeneric<VF8, VU8>(LoadV(z + k) - m);
    a1 += ExpGeneric<VF8, VU8>(LoadV(z + k + kW) - m);
  }
  a0 += a1;
  float s = 0.0f;
  for (int j = 0; j < kW; ++j) s += a0[j];
  for (; k < v; ++k) s += ExpScalar(ToF32(z[k]) - m);
  return s;
}

template <typename T>
void RowGradPortable(const T* z, int64_t v, float m, float r, float g, T* dz) {
  int64_t k = 0;
  for (; k + kW <= v; k += kW) {
    StoreV(dz + k, g * ExpGeneric<VF8, VU8>((LoadV(z + k) - m) - r));
  }
  for (; k < v; ++k) FromF32(g * ExpScalar((ToF32(z[k]) - m) - r), dz + k);
}

// ---------------------------------------------------------------------------
// AVX-512 rows.
// ---------------------------------------------------------------------------

#ifdef JAXKIT_CE_AVX512

// exp(x) for x <= 0 (or NaN, which propagates): 2^y = p(y - floor(y)) *
// 2^floor(y) with y = x log2(e); VSCALEFPS applies the floor itself.
inline __m512 Exp512(__m512 x) {
  // max returns its second operand when either is NaN: NaN propagates.
  // Below -104, 2^y underflows to exactly 0 (so exp(-inf) = 0).
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  const __m512 y = _mm512_mul_ps(x, _mm512_set1_ps(kLog2e));
  const __m512 f =
      _mm512_reduce_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(kP0[5]);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP0[4]));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP0[3]));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP0[2]));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP0[1]));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP0[0]));
  return _mm512_scalef_ps(p, y);
}

inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }

inline __m512 Load16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Lanes outside `mask` hold `fill`.
inline __m512 LoadTail(const float* p, __mmask16 mask, __m512 fill) {
  return _mm512_mask_loadu_ps(fill, mask, p);
}

inline __m512 LoadTail(const uint16_t* p, __mmask16 mask, __m512 fill) {
  const __m256i h = _mm256_maskz_loadu_epi16(mask, p);
  const __m512 x =
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_mask_blend_ps(mask, fill, x);
}

inline void StoreTail(float* p, __mmask16 mask, __m512 x) {
  _mm512_mask_storeu_ps(p, mask, x);
}

inline __m256i ToBf16(__m512 x) {  // round to nearest even, NaN stays NaN
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i lsb =
      _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(
      bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  r = _mm512_srli_epi32(r, 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(
      r, nan, _mm512_or_si512(_mm512_srli_epi32(bits, 16),
                              _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

inline void StoreTail(uint16_t* p, __mmask16 mask, __m512 x) {
  _mm256_mask_storeu_epi16(p, mask, ToBf16(x));
}

inline void Store16(float* p, __m512 x) { _mm512_storeu_ps(p, x); }

inline void Store16(uint16_t* p, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), ToBf16(x));
}

inline __mmask16 TailMask(int64_t n) {
  return static_cast<__mmask16>((1u << n) - 1u);
}

template <typename T>
float RowMax(const T* z, int64_t v) {
  const __m512 ninf = _mm512_set1_ps(-kInf);
  // max(new, acc): a NaN in `new` returns acc, so NaN is skipped here.
  __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t k = 0;
  for (; k + 64 <= v; k += 64) {
    m0 = _mm512_max_ps(Load16(z + k), m0);
    m1 = _mm512_max_ps(Load16(z + k + 16), m1);
    m2 = _mm512_max_ps(Load16(z + k + 32), m2);
    m3 = _mm512_max_ps(Load16(z + k + 48), m3);
  }
  for (; k + 16 <= v; k += 16) m0 = _mm512_max_ps(Load16(z + k), m0);
  if (k < v) m1 = _mm512_max_ps(LoadTail(z + k, TailMask(v - k), ninf), m1);
  return _mm512_reduce_max_ps(
      _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

// `next`: the next row (prefetched, see PrefetchL2) or null.
template <typename T>
float RowSumExp(const T* z, int64_t v, float m, const T* next) {
  const __m512 mv = _mm512_set1_ps(m);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 64 <= v; k += 64) {
    if (next != nullptr) {  // 64 elements: 4 (f32) or 2 (bf16) cache lines
      const char* ahead = reinterpret_cast<const char*>(next + k);
      for (size_t line = 0; line < 64 * sizeof(T); line += 64) {
        PrefetchL2(ahead + line);
      }
    }
    a0 = _mm512_add_ps(a0, Exp512(_mm512_sub_ps(Load16(z + k), mv)));
    a1 = _mm512_add_ps(a1, Exp512(_mm512_sub_ps(Load16(z + k + 16), mv)));
    a2 = _mm512_add_ps(a2, Exp512(_mm512_sub_ps(Load16(z + k + 32), mv)));
    a3 = _mm512_add_ps(a3, Exp512(_mm512_sub_ps(Load16(z + k + 48), mv)));
  }
  for (; k + 16 <= v; k += 16) {
    a0 = _mm512_add_ps(a0, Exp512(_mm512_sub_ps(Load16(z + k), mv)));
  }
  if (k < v) {  // -inf lanes give exp = 0
    const __m512 x = LoadTail(z + k, TailMask(v - k), _mm512_set1_ps(-kInf));
    a1 = _mm512_add_ps(a1, Exp512(_mm512_sub_ps(x, mv)));
  }
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

template <typename T>
void RowGrad(const T* z, int64_t v, float m, float r, float g, T* dz) {
  const __m512 mv = _mm512_set1_ps(m);
  const __m512 rv = _mm512_set1_ps(r);
  const __m512 gv = _mm512_set1_ps(g);
  auto grad = [&](__m512 x) {
    return _mm512_mul_ps(gv, Exp512(_mm512_sub_ps(_mm512_sub_ps(x, mv), rv)));
  };
  int64_t k = 0;
  for (; k + 32 <= v; k += 32) {
    const __m512 d0 = grad(Load16(z + k));
    const __m512 d1 = grad(Load16(z + k + 16));
    Store16(dz + k, d0);
    Store16(dz + k + 16, d1);
  }
  for (; k + 16 <= v; k += 16) Store16(dz + k, grad(Load16(z + k)));
  if (k < v) {
    const __mmask16 mask = TailMask(v - k);
    StoreTail(dz + k, mask, grad(LoadTail(z + k, mask, _mm512_setzero_ps())));
  }
}

#else  // !JAXKIT_CE_AVX512

template <typename T>
float RowMax(const T* z, int64_t v) {
  return RowMaxPortable(z, v);
}

template <typename T>
float RowSumExp(const T* z, int64_t v, float m, const T* next) {
  return RowSumExpPortable(z, v, m, next);
}

template <typename T>
void RowGrad(const T* z, int64_t v, float m, float r, float g, T* dz) {
  RowGradPortable(z, v, m, r, g, dz);
}

#endif  // JAXKIT_CE_AVX512

// ---------------------------------------------------------------------------
// Rows over the thread pool.
// ---------------------------------------------------------------------------

// Below this many logits a call runs on the caller's thread only.
constexpr int64_t kMinParallelElements = 1 << 16;
// Target logits per chunk (chunks are whole rows).
constexpr int64_t kChunkElements = 1 << 17;

// Runs fn(row_begin, row_end) over [0, rows) in chunks. The caller claims
// chunks too and then waits only for chunks that some thread has already
// claimed, so it never waits on a task that has not started (no deadlock
// when every pool thread is busy, e.g. in another such call); tasks that
// start late find nothing left and return. The shared state lives on the
// heap, owned by every task.
template <typename Fn>
void ParallelRows(ffi::ThreadPool& pool, int64_t rows, int64_t cols,
                  const Fn& fn) {
  const int64_t threads = pool.num_threads();
  const int64_t total = rows * std::max<int64_t>(cols, 1);
  if (threads <= 1 || rows < 2 || total < kMinParallelElements) {
    fn(0, rows);
    return;
  }
  int64_t chunks = std::max<int64_t>(1, total / kChunkElements);
  chunks = std::min<int64_t>({chunks, rows, threads * 8});
  chunks = std::max<int64_t>(chunks, std::min<int64_t>(rows, threads));
  const int64_t per = (rows + chunks - 1) / chunks;
  chunks = (rows + per - 1) / per;

  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  auto work = [state, chunks, per, rows, fn]() {
    for (;;) {
      const int64_t c = state->next.fetch_add(1);
      if (c >= chunks) return;
      fn(c * per, std::min(rows, (c + 1) * per));
      if (state->done.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  const int64_t helpers = std::min<int64_t>(threads - 1, chunks - 1);
  for (int64_t i = 0; i < helpers; ++i) {
    auto task = work;  // Schedule takes (and owns) an rvalue
    pool.Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == chunks; });
}

// A fresh multi-megabyte output buffer costs more in page faults (4 KiB
// each, zero-filled by the kernel) than the whole backward pass: ~50 ms for
// [1024, 32000] f32 on a 2-core VM, against ~10 ms of compute. Asking for
// transparent huge pages on its 2 MiB-aligned interior (a hint, no change of
// contents; a no-op where THP is off) cuts that several-fold.
void AdviseHugePages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  if (bytes < 4 * kHuge) return;
  const uintptr_t begin =
      (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

// ---------------------------------------------------------------------------
// Handlers.
// ---------------------------------------------------------------------------

ffi::Error CheckShapes(const ffi::AnyBuffer& logits, int64_t rows,
                       int64_t* cols) {
  const auto dims = logits.dimensions();
  if (dims.size() < 1) {
    return ffi::Error::InvalidArgument(
        "jaxkit cross_entropy: logits must have rank >= 1");
  }
  *cols = dims.back();
  if (static_cast<int64_t>(logits.element_count()) != rows * *cols) {
    return ffi::Error::InvalidArgument(
        "jaxkit cross_entropy: logits must be [..., V] with one label per "
        "row; got " + std::to_string(logits.element_count()) +
        " logits for " + std::to_string(rows) + " labels");
  }
  return ffi::Error::Success();
}

// Rows whose max is +-inf, or whose sum is NaN: the reference's formula with
// libm's exp, no shift (like jax.nn.logsumexp). Rare; kept off the fast path,
// which may then assume x = z - m <= 0 with m finite.
template <typename T>
float SlowLogSum(const T* row, int64_t v) {
  float s = 0.0f;
  for (int64_t k = 0; k < v; ++k) s += std::exp(ToF32(row[k]));
  return std::log(s);
}

template <typename T>
void ForwardRows(const T* z, const int32_t* y, int64_t v, int64_t begin,
                 int64_t end, float* loss, float* shift, float* logsum) {
  for (int64_t b = begin; b < end; ++b) {
    const T* row = z + b * v;
    float m = RowMax(row, v);
    float r;
    if (std::isfinite(m)) {
      r = std::log(RowSumExp(row, v, m, b + 1 < end ? row + v : nullptr));
    } else {
      m = 0.0f;
      r = SlowLogSum(row, v);
    }
    shift[b] = m;
    logsum[b] = r;
    const int32_t label = y[b];
    loss[b] = (label < 0 || label >= v) ? kNaN : r + (m - ToF32(row[label]));
  }
}

template <typename T>
void BackwardRows(const T* z, const int32_t* y, const float* shift,
                  const float* logsum, const float* g, int64_t v,
                  int64_t begin, int64_t end, T* dz) {
  for (int64_t b = begin; b < end; ++b) {
    const T* row = z + b * v;
    T* out = dz + b * v;
    const int32_t label = y[b];
    if (label < 0 || label >= v) {
      for (int64_t k = 0; k < v; ++k) FromF32(kNaN, out + k);
      continue;
    }
    const float m = shift[b], r = logsum[b], gb = g[b];
    if (std::isfinite(r)) {  // r >= 0: every exponent below is <= 0
      RowGrad(row, v, m, r, gb, out);
      const float p = ExpScalar((ToF32(row[label]) - m) - r);
      FromF32(gb * (p - 1.0f), out + label);
    } else {
      for (int64_t k = 0; k < v; ++k) {
        const float p = std::exp((ToF32(row[k]) - m) - r);
        FromF32(gb * (k == label ? p - 1.0f : p), out + k);
      }
    }
  }
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer logits,
                       ffi::Buffer<ffi::S32> labels,
                       ffi::ResultBuffer<ffi::F32> loss,
                       ffi::ResultBuffer<ffi::F32> shift,
                       ffi::ResultBuffer<ffi::F32> logsum) {
  const int64_t rows = labels.element_count();
  int64_t v = 0;
  if (ffi::Error e = CheckShapes(logits, rows, &v); e.failure()) return e;
  if (static_cast<int64_t>(loss->element_count()) != rows ||
      static_cast<int64_t>(shift->element_count()) != rows ||
      static_cast<int64_t>(logsum->element_count()) != rows) {
    return ffi::Error::InvalidArgument(
        "jaxkit cross_entropy: outputs must have one entry per label");
  }
  const int32_t* y = labels.typed_data();
  float* l = loss->typed_data();
  float* s = shift->typed_data();
  float* r = logsum->typed_data();
  switch (logits.element_type()) {
    case ffi::F32: {
      const float* z = logits.typed_data<float>();
      ParallelRows(pool, rows, v, [=](int64_t b0, int64_t b1) {
        ForwardRows(z, y, v, b0, b1, l, s, r);
      });
      return ffi::Error::Success();
    }
    case ffi::BF16: {
      const uint16_t* z =
          static_cast<const uint16_t*>(logits.untyped_data());
      ParallelRows(pool, rows, v, [=](int64_t b0, int64_t b1) {
        ForwardRows(z, y, v, b0, b1, l, s, r);
      });
      return ffi::Error::Success();
    }
    default:
      return ffi::Error::InvalidArgument(
          "jaxkit cross_entropy: logits must be float32 or bfloat16");
  }
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer logits,
                        ffi::Buffer<ffi::S32> labels,
                        ffi::Buffer<ffi::F32> shift,
                        ffi::Buffer<ffi::F32> logsum, ffi::Buffer<ffi::F32> g,
                        ffi::Result<ffi::AnyBuffer> dlogits) {
  const int64_t rows = labels.element_count();
  int64_t v = 0;
  if (ffi::Error e = CheckShapes(logits, rows, &v); e.failure()) return e;
  if (static_cast<int64_t>(shift.element_count()) != rows ||
      static_cast<int64_t>(logsum.element_count()) != rows ||
      static_cast<int64_t>(g.element_count()) != rows ||
      dlogits->element_count() != logits.element_count() ||
      dlogits->element_type() != logits.element_type()) {
    return ffi::Error::InvalidArgument(
        "jaxkit cross_entropy backward: mismatched operand shapes or dtypes");
  }
  const int32_t* y = labels.typed_data();
  const float* s = shift.typed_data();
  const float* r = logsum.typed_data();
  const float* gp = g.typed_data();
  AdviseHugePages(dlogits->untyped_data(), dlogits->size_bytes());
  switch (logits.element_type()) {
    case ffi::F32: {
      const float* z = logits.typed_data<float>();
      float* dz = dlogits->typed_data<float>();
      ParallelRows(pool, rows, v, [=](int64_t b0, int64_t b1) {
        BackwardRows(z, y, s, r, gp, v, b0, b1, dz);
      });
      return ffi::Error::Success();
    }
    case ffi::BF16: {
      const uint16_t* z =
          static_cast<const uint16_t*>(logits.untyped_data());
      uint16_t* dz = static_cast<uint16_t*>(dlogits->untyped_data());
      ParallelRows(pool, rows, v, [=](int64_t b0, int64_t b1) {
        BackwardRows(z, y, s, r, gp, v, b0, b1, dz);
      });
      return ffi::Error::Success();
    }
    default:
      return ffi::Error::InvalidArgument(
          "jaxkit cross_entropy: logits must be float32 or bfloat16");
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxkitCrossEntropyFwd, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxkitCrossEntropyBwd, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>());

/* Decoding kernels for CPU (see gpt2kit/native/__init__.py): few-row products
 * y = x W^T + b, the attention of one new token over the cache, and the transformer
 * blocks of a whole batch-1 step built from both, optionally with its embedding, final norm
 * and LM head; then selection over the vocabulary, the per-row LoRA update and training's
 * dropout (their own delimited sections at the end).
 *
 * Batch-1 decoding is a stream of matrix-vector products: every weight is read once per
 * token and used for one multiply-add, so the step is bound by memory bandwidth. BLAS
 * sgemv streams the weights of GPT-2 small at ~11-15 GB/s on this project's 2-core EPYC
 * against ~20-24 GB/s for a plain read. Here each OpenMP thread (the same libgomp pool
 * PyTorch uses) takes one contiguous run of rows and cuts it into SEGMENTS equal runs
 * that it reads side by side, one row of each at a time: SEGMENTS long sequential
 * streams per thread, where the loop before read four adjacent rows (four short streams,
 * each restarting every row) with software prefetch. Measured in the decode step: 1.32x
 * tokens/s fp32, 1.15x bf16 (presumably the hardware prefetchers keep more requests in
 * flight for more long streams; not checked with counters). No software prefetch: in a
 * microbenchmark of the step's products it slowed the adjacent-rows loop (18-22 GB/s
 * with it, 18-23 without) and the segmented streams, at 21-30 GB/s, need none. bf16
 * weights are widened to fp32 in registers (no bf16 units needed); sums are fp32.
 *
 * A few rows of x (a short prompt, a small batch or beam; bf16 ones on CPUs without bf16
 * units, where PyTorch multiplies one row at a time) reuse each group of weight rows
 * from cache.
 *
 * Quantized weights (int8 per row, int4 per group; gpt2kit/quantization): on CPUs with
 * VNNI (AVX512-VNNI, or AVX-VNNI on ymm; on AVX2 alone each VNNI dot emulated by two
 * instructions, same results) each row of x is rounded to int16 once per product
 * (scale max|x| / 32767: at most max|x| / 65534 off per input, near-lossless) and the
 * weights are widened only to int16 and multiplied with vpdpwssd into exact int32 sums
 * (int8: 2 instructions per 32 weights where widening to fp32 took ~12, which made the
 * int8 step compute-bound); the same segmented streams, and a few rows of x share each
 * widened weight vector. Without VNNI (or for a row of x holding inf / NaN) the weights are
 * widened to fp32 as before. See "quantized products with int16 activations" below and
 * docs/quantization.md. int4 weights instead round x to int8 and multiply their unsigned
 * nibbles with vpdpbusd, in a layout where a 4-byte lane holds one group ("int4 weights").
 *
 * Portable C with GCC/Clang vector extensions, compiled for the host (-march=native).
 */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef SEGMENTS
#define SEGMENTS 4 /* sequential weight streams per thread: 3-6 measured alike, 8 slower */
#endif

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, as PyTorch */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* 8 floats in a register (AVX ymm; two NEON q registers): GCC/Clang vector extensions,
 * so the sums stay in vector accumulators across the whole row and are reduced once. */
typedef float v8f __attribute__((vector_size(32)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));
typedef int32_t v8i32 __attribute__((vector_size(32)));

/* What a product's weight matrix holds (`wk`): fp32, bf16, int8 with one fp32 scale per
 * row, or int4 with one fp32 scale per `group` inputs of a row (the layout of
 * gpt2kit/quantization/tensor.py: per 16 inputs, byte j holds input j in its low nibble
 * and input j + 8 in its high one; inputs past the last whole 16 two per byte in order). */
enum { W_F32 = 0, W_BF16 = 1, W_I8 = 2, W_I4 = 3 };

/* Eight int8 at p sign-extended to int32 lanes. GCC 12 turns the vector-extension
 * conversion of 8 bytes into eight scalar conversions (measured: int8 products at a
 * fraction of fp32's speed), so on AVX2 it is one vpmovsxbd. */
static inline __attribute__((always_inline)) v8i32 widen_i8(const int8_t *p) {
#if defined(__AVX2__)
    const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    v8i32 r;
    memcpy(&r, &v, sizeof r);
    return r;
#else
    const v8i32 r = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
    return r;
#endif
}


/* Eight weights from element i, widened to fp32. w_bf16 is a compile-time constant at
 * both call sites: the compiler emits one specialised loop per weight type. */
static inline __attribute__((always_inline)) v8f load8(const void *w, int64_t i, const int w_bf16) {
    v8f v;
    if (w_bf16) {
        v8u16 h;
        memcpy(&h, (const uint16_t *)w + i, sizeof h);
        v8u32 u = __builtin_convertvector(h, v8u32) << 16;
        memcpy(&v, &u, sizeof v);
    } else {
        memcpy(&v, (const float *)w + i, sizeof v);
    }
    return v;
}

static inline __attribute__((always_inline)) float load1(const void *w, int64_t i, const int w_bf16) {
    return w_bf16 ? bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

static inline float hsum(v8f v) {
    return (v[0] + v[4]) + (v[1] + v[5]) + (v[2] + v[6]) + (v[3] + v[7]);
}

/* acc[i * out + r] = sum_k W[r, k] x[i * in + k] for the n (<= SEGMENTS) weight rows
 * r = r0, r0 + stride, ..., r0 + (n - 1) * stride and the nx (1 or 2) rows of x: up to
 * SEGMENTS x 2 vector accumulators, each weight load feeding nx multiply-adds. */
static inline __attribute__((always_inline)) void rows_dot(
    const void *W, const float *restrict x, float *restrict acc, int64_t r0, int n,
    int64_t stride, int nx, int64_t in, int64_t out, const int w_bf16) {
    const v8f zero = {0};
    v8f a[2][SEGMENTS];
    float tail[2][SEGMENTS];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < SEGMENTS; r++) a[i][r] = zero, tail[i][r] = 0.0f;
    int64_t k = 0;
    for (; k + 8 <= in; k += 8) {
        v8f xv[2];
        for (int i = 0; i < nx; i++) memcpy(&xv[i], x + i * in + k, sizeof xv[i]);
        for (int r = 0; r < n; r++) {
            const v8f w = load8(W, (r0 + r * stride) * in + k, w_bf16);
            for (int i = 0; i < nx; i++) a[i][r] += w * xv[i];
        }
    }
    for (; k < in; k++)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < nx; i++)
                tail[i][r] += load1(W, (r0 + r * stride) * in + k, w_bf16) * x[i * in + k];
    for (int i = 0; i < nx; i++)
        for (int r = 0; r < n; r++) acc[i * out + r0 + r * stride] = hsum(a[i][r]) + tail[i][r];
}

/* rows_dot on rows [i, i + nx) of x, with n and nx as constants where they are full. */
static inline __attribute__((always_inline)) void rows_dot_x(
    const void *W, const float *restrict x, float *restrict acc, int64_t r0, int n,
    int64_t stride, int64_t i, int nx, int64_t in, int64_t out, const int w_bf16) {
    const float *xi = x + i * in;
    float *ai = acc + i * out;
    if (n == SEGMENTS && nx == 2) rows_dot(W, xi, ai, r0, SEGMENTS, stride, 2, in, out, w_bf16);
    else if (n == SEGMENTS) rows_dot(W, xi, ai, r0, SEGMENTS, stride, 1, in, out, w_bf16);
    else if (nx == 2) rows_dot(W, xi, ai, r0, n, stride, 2, in, out, w_bf16);
    else rows_dot(W, xi, ai, r0, n, stride, 1, in, out, w_bf16);
}

/* Thread `tid` of `nth`'s share of acc[i, r] = sum_k W[r, k] x[i, k] for the `nx` rows
 * of x (call inside a parallel region): the contiguous run of weight rows [*lo, *hi),
 * cut into SEGMENTS equal runs read side by side - one row of each at a time, so
 * SEGMENTS long sequential streams per thread (the rows left over, fewer than SEGMENTS,
 * at the end). Each group of weight rows is read from memory once and reused from cache
 * for every pair of rows of x. */
static inline __attribute__((always_inline)) void gemv_share(
    const void *W, const float *restrict x, float *restrict acc, int64_t nx, int64_t out,
    int64_t in, int64_t tid, int64_t nth, int64_t *lo, int64_t *hi, const int w_bf16) {
    const int64_t r0 = out * tid / nth, r1 = out * (tid + 1) / nth;
    const int64_t seg = (r1 - r0) / SEGMENTS, rest = r0 + SEGMENTS * seg;
    for (int64_t j = 0; j < seg; j++)
        for (int64_t i = 0; i < nx; i += 2)
            rows_dot_x(W, x, acc, r0 + j, SEGMENTS, seg, i, nx - i >= 2 ? 2 : 1, in, out, w_bf16);
    if (rest < r1)
        for (int64_t i = 0; i < nx; i += 2)
            rows_dot_x(W, x, acc, rest, (int)(r1 - rest), 1, i, nx - i >= 2 ? 2 : 1, in, out,
                       w_bf16);
    *lo = r0;
    *hi = r1;
}

static inline __attribute__((always_inline)) void gemv_impl(
    const void *W, const float *restrict x, float *restrict acc, int64_t nx, int64_t out,
    int64_t in, int nthreads, const int w_bf16) {
    #pragma omp parallel num_threads(nthreads)
    {
        int64_t lo, hi;
        gemv_share(W, x, acc, nx, out, in, omp_get_thread_num(), omp_get_num_threads(), &lo,
                   &hi, w_bf16);
    }
}

/* -- products of quantized weights (gpt2kit/quantization) -------------------------------
 * Separate from the fp32 / bf16 loops above (whose code, and so summation order, stays as
 * it was): the same segmented streams, with weights widened from int8 (one scale per row,
 * applied to the row's sum) or int4 (one scale per group of inputs). */

/* acc[i * out + r] = scale[r] * sum_k q[r, k] x[i * in + k], as rows_dot (int8). */
static inline __attribute__((always_inline)) void qrows_dot8(
    const int8_t *W, const float *restrict x, float *restrict acc, int64_t r0, int n,
    int64_t stride, int nx, int64_t in, int64_t out, const float *scales) {
    const v8f zero = {0};
    v8f a[2][SEGMENTS];
    float tail[2][SEGMENTS];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < SEGMENTS; r++) a[i][r] = zero, tail[i][r] = 0.0f;
    int64_t k = 0;
    for (; k + 8 <= in; k += 8) {
        v8f xv[2];
        for (int i = 0; i < nx; i++) memcpy(&xv[i], x + i * in + k, sizeof xv[i]);
        for (int r = 0; r < n; r++) {
            const v8f w = __builtin_convertvector(widen_i8(W + (r0 + r * stride) * in + k), v8f);
            for (int i = 0; i < nx; i++) a[i][r] += w * xv[i];
        }
    }
    for (; k < in; k++)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < nx; i++)
                tail[i][r] += (float)W[(r0 + r * stride) * in + k] * x[i * in + k];
    for (int i = 0; i < nx; i++)
        for (int r = 0; r < n; r++)
            acc[i * out + r0 + r * stride] = (hsum(a[i][r]) + tail[i][r]) * scales[r0 + r * stride];
}

/* qrows_dot8 on rows [i, i + nx) of x, constants where full. */
static inline __attribute__((always_inline)) void qrows_dot_x(
    const void *W, const float *restrict x, float *restrict acc, int64_t r0, int n,
    int64_t stride, int64_t i, int nx, int64_t in, int64_t out, const float *scales,
    int64_t group, const int wk) {
    const float *xi = x + i * in;
    float *ai = acc + i * out;
    (void)group, (void)wk;
    if (n == SEGMENTS && nx == 2) qrows_dot8(W, xi, ai, r0, SEGMENTS, stride, 2, in, out, scales);
    else if (n == SEGMENTS) qrows_dot8(W, xi, ai, r0, SEGMENTS, stride, 1, in, out, scales);
    else if (nx == 2) qrows_dot8(W, xi, ai, r0, n, stride, 2, in, out, scales);
    else qrows_dot8(W, xi, ai, r0, n, stride, 1, in, out, scales);
}

/* gemv_share for int8 weights (wk W_I8), fp32 x (the path without VNNI). */
static inline __attribute__((always_inline)) void qgemv_share_f32(
    const void *W, const float *restrict x, float *restrict acc, int64_t nx, int64_t out,
    int64_t in, int64_t tid, int64_t nth, int64_t *lo, int64_t *hi, const float *scales,
    int64_t group, const int wk) {
    const int64_t r0 = out * tid / nth, r1 = out * (tid + 1) / nth;
    const int64_t seg = (r1 - r0) / SEGMENTS, rest = r0 + SEGMENTS * seg;
    for (int64_t j = 0; j < seg; j++)
        for (int64_t i = 0; i < nx; i += 2)
            qrows_dot_x(W, x, acc, r0 + j, SEGMENTS, seg, i, nx - i >= 2 ? 2 : 1, in, out, scales,
                        group, wk);
    if (rest < r1)
        for (int64_t i = 0; i < nx; i += 2)
            qrows_dot_x(W, x, acc, rest, (int)(r1 - rest), 1, i, nx - i >= 2 ? 2 : 1, in, out,
                        scales, group, wk);
    *lo = r0;
    *hi = r1;
}

/* -- quantized products with int16 activations (VNNI) ------------------------------------
 * Why: widening every weight to fp32 costs ~3 instructions per 8 weights (load-widen to
 * int32, convert, multiply-add), and at that rate the int8 / int4 products are bound by
 * the core, not by memory (int8 batch 1 streamed about half the bytes per second fp32
 * does). With VNNI, vpdpwssd multiplies 16-bit pairs and adds them into int32 lanes, so
 * each row of x is rounded once per product to int16 (one fp32 scale per row: max|x| /
 * 32767), the weights are widened only to int16 (int8: one vpmovsxbw per 32 weights;
 * int4 has its own kernel, "int4 weights" below), and one instruction does 32 (zmm) or
 * 16 (ymm) multiply-adds. The sums are exact integers; the only new error is x's rounding,
 * at most max|x| / 65534 per input: for an output, |error| <= max|x| / 65534 * sum |q s|
 * over its row (what tests/test_quant.py checks), ~250x below the int8 weights' own
 * rounding. A row of x that is not finite (inf / NaN) takes the fp32 path (the kernels
 * above) for the whole product, so such inputs give exactly what they gave before.
 *
 * Overflow: a lane of vpdpwssd adds two products of at most 32767 * 127 each time; after
 * QV_FLUSH dpwssd steps (2 * 128 = 256 products: 32767 * 127 * 256 < 2^31) the int32
 * lanes are converted and added to fp32 totals. int4 converts per group, far below that.
 *
 * The segmented streams (gemv_share) stay as they are: each thread reads SEGMENTS long
 * runs of rows side by side; per step of the inner loop one weight vector of each row is
 * widened once and used for every row of x in the tile (up to QX rows), then the tile's
 * next rows of x reuse the weight rows from L1. */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#ifdef GPT2KIT_QVNNI_256 /* (testing: the AVX-VNNI code path's vector width on AVX-512) */
#define QVNNI 256
#else
#define QVNNI 512
#endif
/* vpdpwssd as inline asm, not the intrinsic: with the intrinsic GCC 12 copied every
 * accumulator through another register (or the stack) at each step of the loop. */
#define DPWSSD_ASM(a, w, x) __asm__("vpdpwssd %2, %1, %0" : "+v"(a) : "v"(w), "v"(x))
#elif defined(__AVXVNNI__)
#define QVNNI 256
#define DPWSSD_ASM(a, w, x) ((a) = _mm256_dpwssd_avx_epi32(a, w, x))
#elif defined(__AVX2__)
/* No VNNI (e.g. AMD Zen 1-3): the same integer kernels on ymm, each VNNI dot emulated by
 * two AVX2 instructions. vpdpwssd is exactly vpmaddwd (int16 pairs summed into int32; no
 * pair reaches 2^31: |w| <= 127, |x| <= 32767) plus vpaddd. Widening int8 weights to int16
 * and multiplying in integers costs 3 instructions per 16 weights where widening to fp32
 * costs 3 per 8 (vpmovsxbd, convert, FMA), which made the fp32 path compute-bound. */
#define QVNNI 256
#define QVNNI_EMULATED 1
#define DPWSSD_ASM(a, w, x) ((a) = _mm256_add_epi32(a, _mm256_madd_epi16(w, x)))
#else
#define QVNNI 0
#endif
#ifndef QVNNI_EMULATED
#define QVNNI_EMULATED 0
#endif

#if QVNNI
#define QV_FLUSH 128 /* dpwssd steps into one int32 accumulator before it is flushed */
#if defined(__AMX_TILE__) && !defined(QV_PREFETCH)
/* Bytes ahead of each stream to prefetch in the int8 kernel on Intel Xeons with AMX
 * (Sapphire Rapids and later), where it was measured: the batch-1 products of GPT-2 small
 * (124 MB of int8, read from a 300 MB L3) 1.17-1.33x faster with 1024 than without in 4
 * interleaved rounds on the 2-core Xeon (512 and 2048 a little less). Elsewhere none: on
 * the EPYCs software prefetch slowed an earlier loop and was never measured on this one. */
#define QV_PREFETCH 1024
#endif
#ifndef QX
/* rows of x per tile (int8: SEGMENTS x QX int32 accumulators, plus SEGMENTS widened weight
 * vectors): 4 where 32 vector registers hold them (AVX-512), 2 on ymm-only CPUs (16 ymm),
 * where 4 spilled (Zen 1, 8 rows of x: 15.3 -> 18.6 G MAC/s per core with 2) */
#if QVNNI == 512
#define QX 4
#else
#define QX 2
#endif
#endif
#define QX4 2        /* ... int4 (int32 and fp32 accumulators per row and x row) */

#if QVNNI == 512 /* int8 weights: 32 per zmm */
typedef __m512i qv_t;
#define QV_IN 32
static inline __attribute__((always_inline)) qv_t qv_w8(const int8_t *p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
}
static inline __attribute__((always_inline)) qv_t qv_x(const int16_t *p) {
    return _mm512_loadu_si512((const void *)p);
}
static inline __attribute__((always_inline)) qv_t qv_dot(qv_t a, qv_t w, qv_t x) {
    DPWSSD_ASM(a, w, x);
    return a;
}
static inline __attribute__((always_inline)) float qv_sum(qv_t a) {
    return _mm512_reduce_add_ps(_mm512_cvtepi32_ps(a));
}
#define QV_ZERO _mm512_setzero_si512()
#else /* AVX-VNNI without AVX-512: 16 per ymm */
typedef __m256i qv_t;
#define QV_IN 16
static inline __attribute__((always_inline)) qv_t qv_w8(const int8_t *p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
}
static inline __attribute__((always_inline)) qv_t qv_x(const int16_t *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
static inline __attribute__((always_inline)) qv_t qv_dot(qv_t a, qv_t w, qv_t x) {
    DPWSSD_ASM(a, w, x);
    return a;
}
static inline float hsum256(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
static inline __attribute__((always_inline)) float qv_sum(qv_t a) {
    return hsum256(_mm256_cvtepi32_ps(a));
}
#define QV_ZERO _mm256_setzero_si256()
#endif

#if QVNNI == 512
static inline float hsum256f(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
#else
#define hsum256f hsum256
#endif

/* Eight floats at src times inv, rounded to nearest (even) and saturated to int16, at dst. */
static inline __attribute__((always_inline)) void round8_i16(const float *src, __m256 inv,
                                                            int16_t *dst) {
    const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src), inv));
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(v, v), 0x08);
    _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(p));
}

/* Row i of x [nx, in] rounded to int16, xq[i * in + k] = round(x[i, k] / xs[i]) with
 * xs[i] = max_k |x[i, k]| / 32767 (0 for a zero row), stored in the order the int4 kernel
 * reads (qrows_dot4_vnni): inputs [0, vz) per block of 64 as the low nibbles of 32 bytes
 * meet them (inputs 0-7, 16-23, 32-39, 48-55), then the high ones (8-15, ..., 56-63);
 * [vz, v32) likewise per block of 32 (0-7, 16-23, 8-15, 24-31); the rest in order (int8:
 * vz = v32 = 0, all in order). Returns 0 when a row is not finite (nothing is usable). */
static int quantize_x16(const float *restrict x, int64_t nx, int64_t in, int16_t *restrict xq,
                        float *restrict xs, int64_t vz, int64_t v32) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < nx; i++) {
        const float *xi = x + i * in;
        __m256 m8 = _mm256_setzero_ps(), nan8 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= in; k += 8) {
            const __m256 v = _mm256_loadu_ps(xi + k);
            m8 = _mm256_max_ps(m8, _mm256_and_ps(v, absmask));
            nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        float lanes[8], m = 0.0f;
        _mm256_storeu_ps(lanes, m8);
        int bad = _mm256_movemask_ps(nan8);
        for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
        for (; k < in; k++) {
            const float a = fabsf(xi[k]);
            m = a > m ? a : m;
            bad |= !(a <= INFINITY);
        }
        if (bad || !(m < INFINITY)) return 0;
        xs[i] = m / 32767.0f;
        const float inv1 = m > 0.0f ? 32767.0f / m : 0.0f;
        const __m256 inv = _mm256_set1_ps(inv1);
        int16_t *qi = xq + i * in;
        k = 0;
        for (; k < vz; k += 64)
            for (int c = 0; c < 4; c++) {
                round8_i16(xi + k + 16 * c, inv, qi + k + 8 * c);
                round8_i16(xi + k + 16 * c + 8, inv, qi + k + 32 + 8 * c);
            }
        for (; k < v32; k += 32)
            for (int c = 0; c < 2; c++) {
                round8_i16(xi + k + 16 * c, inv, qi + k + 8 * c);
                round8_i16(xi + k + 16 * c + 8, inv, qi + k + 16 + 8 * c);
            }
        for (; k + 8 <= in; k += 8) round8_i16(xi + k, inv, qi + k);
        for (; k < in; k++) {
            float v = nearbyintf(xi[k] * inv1);
            v = v > 32767.0f ? 32767.0f : v < -32767.0f ? -32767.0f : v;
            qi[k] = (int16_t)v;
        }
    }
    return 1;
}

/* acc[i * out + r] = scales[r] * xs[i] * sum_k q[r, k] xq[i * in + k] for the n (<=
 * SEGMENTS) int8 weight rows r = r0 + j * stride and nx (<= QX) rows of xq. */
static inline __attribute__((always_inline)) void qrows_dot8_vnni(
    const int8_t *W, const int16_t *restrict xq, const float *restrict xs, float *restrict acc,
    int64_t r0, int n, int64_t stride, int nx, int64_t in, int64_t out, const float *scales) {
    float tot[QX][SEGMENTS];
    for (int i = 0; i < QX; i++)
        for (int r = 0; r < SEGMENTS; r++) tot[i][r] = 0.0f;
    const int64_t whole = in - in % QV_IN, chunk = (int64_t)QV_FLUSH * QV_IN;
    for (int64_t c0 = 0; c0 < whole; c0 += chunk) {
        const int64_t c1 = c0 + chunk < whole ? c0 + chunk : whole;
        qv_t a[QX][SEGMENTS];
        for (int i = 0; i < QX; i++)
            for (int r = 0; r < SEGMENTS; r++) a[i][r] = QV_ZERO;
        for (int64_t k = c0; k < c1; k += QV_IN) {
            qv_t w[SEGMENTS];
            for (int r = 0; r < n; r++) w[r] = qv_w8(W + (r0 + r * stride) * in + k);
#ifdef QV_PREFETCH
            if (!(k & 32))
                for (int r = 0; r < n; r++)
                    _mm_prefetch((const char *)W + (r0 + r * stride) * in + k + QV_PREFETCH, _MM_HINT_T0);
#endif
            for (int i = 0; i < nx; i++) {
                const qv_t xv = qv_x(xq + i * in + k);
                for (int r = 0; r < n; r++) a[i][r] = qv_dot(a[i][r], w[r], xv);
            }
        }
        for (int i = 0; i < nx; i++)
            for (int r = 0; r < n; r++) tot[i][r] += qv_sum(a[i][r]);
    }
    for (int64_t k = whole; k < in; k++) /* (exact: |q x| < 2^22) */
        for (int r = 0; r < n; r++)
            for (int i = 0; i < nx; i++)
                tot[i][r] += (float)((int32_t)W[(r0 + r * stride) * in + k] * xq[i * in + k]);
    for (int i = 0; i < nx; i++)
        for (int r = 0; r < n; r++)
            acc[i * out + r0 + r * stride] = tot[i][r] * (scales[r0 + r * stride] * xs[i]);
}

/* qrows_dot8_vnni on rows [i, i + nx) of x, n and nx constants where the
 * tile is full (the compiler keeps the accumulators in registers). */
static inline __attribute__((always_inline)) void qrows_vnni_x(
    const void *W, const int16_t *xq, const float *xs, float *acc, int64_t r0, int n,
    int64_t stride, int64_t i, int nx, int64_t in, int64_t out, const float *scales,
    int64_t group, int64_t vz, const int wk) {
    const int16_t *xi = xq + i * in;
    const float *si = xs + i;
    float *ai = acc + i * out;
    (void)group, (void)vz, (void)wk;
    if (n == SEGMENTS) {
        switch (nx) {
#if QX >= 4
        case 4: qrows_dot8_vnni(W, xi, si, ai, r0, SEGMENTS, stride, 4, in, out, scales); break;
        case 3: qrows_dot8_vnni(W, xi, si, ai, r0, SEGMENTS, stride, 3, in, out, scales); break;
#endif
        case 2: qrows_dot8_vnni(W, xi, si, ai, r0, SEGMENTS, stride, 2, in, out, scales); break;
        default: qrows_dot8_vnni(W, xi, si, ai, r0, SEGMENTS, stride, 1, in, out, scales);
        }
    } else qrows_dot8_vnni(W, xi, si, ai, r0, n, stride, nx, in, out, scales);
}
#endif /* QVNNI */

/* -- int4 weights (W_I4) ------------------------------------------------------------------
 * Layout (gpt2kit/quantization/tensor.py `pack_int4`; one row of `in` inputs, in / 2
 * bytes, rows back to back). Nibbles are unsigned, q + 8 (0..15). The row's groups of
 * `group` inputs (a multiple of 16; the last one may be shorter, L inputs, a multiple of
 * 8) are cut into blocks of 16 groups (the last block may have fewer, G). A block is
 * group / 8 chunks; chunk t holds, for each group l of the block that has more than 8t
 * inputs (all G, or G - 1 where the row's short last group has ended), 4 bytes at 4 * l:
 * byte c has input 8t + c of group l in its low nibble and input 8t + 4 + c in its high
 * one. So a 64-byte load of a full chunk is 128 weights where int32 lane l (4 bytes)
 * holds 8 inputs of group l: a lane accumulates a whole group, and after a block one
 * convert and one multiply-add with the 16 group scales (contiguous) finish it.
 *
 * With VNNI (vpdpbusd: u8 x s8, four products per int32 lane, 64 per zmm) the weights are
 * the unsigned operand as stored, unpacked with two ands (v & 0x0F, and v & 0xF0, whose
 * sums are 16x and shifted back after the block: exact), and x is rounded once per
 * product to int8 (the s8 operand; xs = max|x| / 127, 1 for a zero row, q = rint(x / xs):
 * `quantization.modules.quantize_activations`), stored per block in the order the
 * chunks meet it (q4_prepare_x). q + 8 instead of q costs 8 * sum(x) per group: the
 * accumulator of each group starts at -8 * sum of its int8 inputs, computed once per
 * product and shared by every weight row. Exact integers throughout: a lane's low-nibble
 * sum and correction stay within group * (15 * 127 / 2 + 8 * 127), the high one within
 * 16 * group * 15 * 127 / 2 (group 128: 3.9 M, far from 2^31), and their combined sum
 * converts to fp32 exactly while below 2^24 (any group up to ~5700 inputs): output = xs *
 * sum_g s_g * sum_{k in g} q_k xq_k, up to fp32 summation over the groups. The only error against
 * fp32 activations is x's rounding, at most xs / 2 = max|x| / 254 per input.
 *
 * A block of 8 full groups (768 = 16 + 8 groups of 32) is read as 64 bytes for two chunks
 * at once (lanes 8-15 are chunk t + 1's), the halves added after the block ("pair"). Any
 * other partial block (fewer groups, a short last group: the bundled 120-wide model's
 * 32 + 32 + 32 + 24) uses masked loads, on ymm where it has at most 8 groups.
 *
 * Without VNNI (or for a row of x that is not finite) each weight is dequantized to fp32
 * (q * s, the module path's values) in registers and multiplied with fp32 x. */

/* Groups in block b (starting at group g0) and the length of its last group. */
static inline __attribute__((always_inline)) void q4_block(int64_t g0, int64_t ng, int64_t in,
                                                           int64_t group, int64_t *G,
                                                           int64_t *L) {
    *G = ng - g0 < 16 ? ng - g0 : 16;
    *L = g0 + *G == ng ? in - (ng - 1) * group : group;
}

/* o[k] = q_k * s[k / group] (q the signed value) for one row of the layout above: fp32,
 * the module path's dequantize. */
static void q4_deq_row(const uint8_t *restrict row, int64_t in, int64_t group,
                       const float *restrict s, float *restrict o) {
    const int64_t ng = (in + group - 1) / group, ch = group / 8;
    const v8i32 sh = {0, 0, 0, 0, 4, 4, 4, 4}, m15 = {15, 15, 15, 15, 15, 15, 15, 15};
    const v8i32 eight = {8, 8, 8, 8, 8, 8, 8, 8};
    int64_t off = 0;
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        int64_t G, L;
        q4_block(g0, ng, in, group, &G, &L);
        for (int64_t t = 0; t < ch; t++) {
            const int64_t n = 8 * t < L ? G : G - 1;
            int64_t l = 0;
            for (; l + 2 <= n; l += 2) { /* two groups: 8 bytes, 16 weights */
                const v8i32 v = widen_i8((const int8_t *)row + off + 4 * l);
                const v8i32 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 0, 1, 2, 3);
                const v8i32 b = __builtin_shufflevector(v, v, 4, 5, 6, 7, 4, 5, 6, 7);
                const float sa = s[g0 + l], sb = s[g0 + l + 1];
                const v8f va = __builtin_convertvector(((a >> sh) & m15) - eight, v8f) * sa;
                const v8f vb = __builtin_convertvector(((b >> sh) & m15) - eight, v8f) * sb;
                memcpy(o + (g0 + l) * group + 8 * t, &va, sizeof va);
                memcpy(o + (g0 + l + 1) * group + 8 * t, &vb, sizeof vb);
            }
            for (; l < n; l++) { /* (an odd last group) */
                const uint8_t *p = row + off + 4 * l;
                float *d = o + (g0 + l) * group + 8 * t;
                const float sl = s[g0 + l];
                for (int c = 0; c < 4; c++) {
                    d[c] = (float)((p[c] & 15) - 8) * sl;
                    d[c + 4] = (float)((p[c] >> 4) - 8) * sl;
                }
            }
            off += 4 * n;
        }
    }
}

/* acc[i * out + r] = sum_k (q s)[r, k] x[i * in + k] for the n weight rows r0 + j * stride
 * and nx rows of x, fp32: each weight row dequantized as the module path does (q * s,
 * `q4_deq_row`, vectorised) into a scratch row, then multiplied with each row of fp32 x
 * while it is in L1. */
static void q4_rows_f32(const uint8_t *W, const float *restrict x, float *restrict acc,
                        int64_t r0, int n, int64_t stride, int64_t nx, int64_t in, int64_t out,
                        const float *scales, int64_t group) {
    const int64_t rb = in / 2, ng = (in + group - 1) / group;
    float stack_row[4096]; /* (GPT-2 widths; wider rows are allocated) */
    float *w = in <= 4096 ? stack_row : malloc(sizeof(float) * (size_t)in);
    for (int r = 0; r < n; r++) {
        const int64_t row = r0 + r * stride;
        if (!w) { /* out of memory: NaN, never a wrong finite value */
            for (int64_t i = 0; i < nx; i++) acc[i * out + row] = NAN;
            continue;
        }
        q4_deq_row(W + row * rb, in, group, scales + row * ng, w);
        for (int64_t i = 0; i < nx; i++) {
            const float *xi = x + i * in;
            v8f a = {0};
            int64_t k = 0;
            for (; k + 8 <= in; k += 8) {
                v8f wv, xv;
                memcpy(&wv, w + k, sizeof wv);
                memcpy(&xv, xi + k, sizeof xv);
                a += wv * xv;
            }
            float t = hsum(a);
            for (; k < in; k++) t += w[k] * xi[k];
            acc[i * out + row] = t;
        }
    }
    if (w != stack_row) free(w);
}

#if QVNNI
#define Q4X 2 /* rows of x per tile (three accumulators per weight row and row of x) */

/* vpdpbusd (a += u8 w . s8 x per 4 bytes), inline asm as DPWSSD_ASM; x may be in memory. */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPBUSD_ASM(a, w, x) __asm__("vpdpbusd %2, %1, %0" : "+v"(a) : "v"(w), "vm"(x))
#elif !QVNNI_EMULATED /* (emulated: see the AVX2 q4_block_ymm) */
#define DPBUSD_ASM(a, w, x) ((a) = _mm256_dpbusd_avx_epi32(a, w, x))
#endif

/* Bytes of the int8 x of one block: 16 int32 corrections, then per chunk t (per pair of
 * chunks in a "pair" block) 64 bytes meeting the low nibbles and 64 the high ones. */
static inline int64_t q4_xblock(int64_t group) { return 64 + 16 * group; }

/* Rows of x [nx, in] rounded to int8 (xs[i], as quantize_activations) and laid out per
 * block for the kernel, xbs bytes per row of x. Returns 0 when a row is not finite. */
static int q4_prepare_x(const float *restrict x, int64_t nx, int64_t in, int64_t group,
                        int8_t *restrict xb, int64_t xbs, float *restrict xs) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const int64_t ng = (in + group - 1) / group, bx = q4_xblock(group);
    memset(xb, 0, (size_t)(nx * xbs));
    for (int64_t i = 0; i < nx; i++) {
        const float *xi = x + i * in;
        __m256 m8 = _mm256_setzero_ps(), nan8 = _mm256_setzero_ps();
        for (int64_t k = 0; k < in; k += 8) { /* (in is a multiple of 8) */
            const __m256 v = _mm256_loadu_ps(xi + k);
            m8 = _mm256_max_ps(m8, _mm256_and_ps(v, absmask));
            nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        float lanes[8], m = 0.0f;
        _mm256_storeu_ps(lanes, m8);
        for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
        if (_mm256_movemask_ps(nan8) || !(m < INFINITY)) return 0;
        const float s = m > 0.0f ? m / 127.0f : 1.0f;
        xs[i] = s;
        const __m128 sv = _mm_set1_ps(s);
        int8_t *xr = xb + i * xbs;
        for (int64_t g = 0; g < ng; g++) {
            int64_t G, L;
            q4_block(g - g % 16, ng, in, group, &G, &L);
            const int64_t l = g % 16, len = g == ng - 1 ? L : group;
            const int pair = G == 8 && L == group;
            int8_t *blk = xr + (g / 16) * bx;
            __m128i sum = _mm_setzero_si128();
            for (int64_t t = 0; 8 * t < len; t++) {
                const float *p = xi + g * group + 8 * t;
                const __m128i a = _mm_cvtps_epi32(_mm_div_ps(_mm_loadu_ps(p), sv));
                const __m128i b = _mm_cvtps_epi32(_mm_div_ps(_mm_loadu_ps(p + 4), sv));
                sum = _mm_add_epi32(sum, _mm_add_epi32(a, b));
                const __m128i q = _mm_packs_epi16(_mm_packs_epi32(a, b), _mm_setzero_si128());
                const int64_t at = pair ? 64 + 128 * (t / 2) + 32 * (t % 2) + 4 * l
                                        : 64 + 128 * t + 4 * l;
                const int32_t lo = _mm_cvtsi128_si32(q), hi = _mm_extract_epi32(q, 1);
                memcpy(blk + at, &lo, 4);
                memcpy(blk + at + 64, &hi, 4);
            }
            sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0x4e));
            sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0xb1));
            const int32_t corr = -8 * _mm_cvtsi128_si32(sum);
            memcpy(blk + 4 * l, &corr, 4);
        }
    }
    return 1;
}

/* 8 int32 lanes of p, the first `lanes` loaded (the rest zero, not read). */
static inline __attribute__((always_inline)) __m256i q4_load8(const void *p, int64_t lanes) {
#if defined(__AVX512VL__)
    return _mm256_maskz_loadu_epi32((__mmask8)((1u << lanes) - 1), p);
#else
    if (lanes == 8) return _mm256_loadu_si256((const __m256i *)p); /* (vpmaskmovd: slower) */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_epi32((const int *)p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)lanes), idx));
#endif
}
static inline __attribute__((always_inline)) __m256 q4_load8f(const float *p, int64_t lanes) {
    return _mm256_castsi256_ps(q4_load8(p, lanes));
}

#if QVNNI == 512
typedef __m512 q4f_t;
#define Q4F_ZERO _mm512_setzero_ps()
static inline __attribute__((always_inline)) q4f_t q4f_add8(q4f_t f, __m256 v) {
    return _mm512_add_ps(f, _mm512_zextps256_ps512(v));
}
static inline __attribute__((always_inline)) float q4f_sum(q4f_t f) {
    return _mm512_reduce_add_ps(f);
}
#else
typedef __m256 q4f_t;
#define Q4F_ZERO _mm256_setzero_ps()
static inline __attribute__((always_inline)) q4f_t q4f_add8(q4f_t f, __m256 v) {
    return _mm256_add_ps(f, v);
}
static inline __attribute__((always_inline)) float q4f_sum(q4f_t f) { return hsum256f(f); }
#endif

/* Chunk t of a block read on ymm (half h of its lanes): the groups that have inputs in it
 * (`nt`: the last group may be shorter, `L` its length), how many of this half's 8 lanes
 * those fill, and where its int8 x starts in the block (`q4_xblock`). Shared by both
 * q4_block_ymm kernels. */
static inline __attribute__((always_inline)) void q4_chunk(int64_t t, int64_t G, int64_t L,
                                                           int h, int pair, int64_t *nt,
                                                           int64_t *lanes, int64_t *xo) {
    *nt = 8 * t < L ? G : G - 1;
    *lanes = *nt - 8 * h > 8 ? 8 : *nt - 8 * h;
    *xo = pair ? 64 + 128 * (t / 2) + 32 * (t % 2) : 64 + 128 * t + 32 * h;
}

#if !QVNNI_EMULATED
/* One block on ymm: lanes 8h..8h + 7 of its chunks (h = 0, 1), into f. `off`: the block's
 * first byte in a row; `pair`: a block of 8 full groups (x in the pair order). */
static inline __attribute__((always_inline)) void q4_block_ymm(
    const uint8_t *W, int64_t rb, const int8_t *xb, int64_t xbs, q4f_t f[Q4X][SEGMENTS],
    int64_t r0, int n, int64_t stride, int nx, const float *scales, int64_t ng, int64_t g0,
    int64_t G, int64_t L, int64_t ch, int64_t off, int h, int pair) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), mf0 = _mm256_set1_epi8((char)0xF0);
    __m256i a[Q4X][SEGMENTS], b[Q4X][SEGMENTS];
    for (int i = 0; i < nx; i++) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(xb + i * xbs + 32 * h));
        for (int r = 0; r < n; r++) a[i][r] = c, b[i][r] = _mm256_setzero_si256();
    }
    int64_t wo = off;
    for (int64_t t = 0; t < ch; t++) {
        int64_t nt, lanes, xo;
        q4_chunk(t, G, L, h, pair, &nt, &lanes, &xo);
        if (lanes > 0)
            for (int r = 0; r < n; r++) {
                const __m256i v = q4_load8(W + (r0 + r * stride) * rb + wo + 32 * h, lanes);
                const __m256i lo = _mm256_and_si256(v, m0f), hi = _mm256_and_si256(v, mf0);
                for (int i = 0; i < nx; i++) {
                    const __m256i *xp = (const __m256i *)(xb + i * xbs + xo);
                    DPBUSD_ASM(a[i][r], lo, xp[0]);
                    DPBUSD_ASM(b[i][r], hi, xp[2]);
                }
            }
        wo += 4 * nt;
    }
    const int64_t gl = G - 8 * h > 8 ? 8 : G - 8 * h;
    for (int r = 0; r < n; r++) {
        const __m256 s = q4_load8f(scales + (r0 + r * stride) * ng + g0 + 8 * h, gl);
        for (int i = 0; i < nx; i++) {
            const __m256i tot = _mm256_add_epi32(a[i][r], _mm256_srai_epi32(b[i][r], 4));
            f[i][r] = q4f_add8(f[i][r], _mm256_mul_ps(_mm256_cvtepi32_ps(tot), s));
        }
    }
}

#else
/* q4_block_ymm without VNNI (AVX2). vpmaddubsw multiplies u8 x s8 and adds pairs into
 * saturating int16 lanes; vpmaddwd with ones adds int16 pairs into int32. Both run on one
 * multiply pipe on some cores (Zen 1: each 256-bit op is two 128-bit ones), so the int16
 * pair sums are added in int16 (vpaddw, any pipe) over up to 4 chunks and widened once:
 * with the high nibbles shifted down (0..15, not 16x), an int16 lane holds at most 4 chunks
 * x 2 nibbles x 2 products x 15 x 127 = 30480 < 2^15, exact. Same sums as q4_block_ymm. */
static inline __attribute__((always_inline)) void q4_block_ymm(
    const uint8_t *W, int64_t rb, const int8_t *xb, int64_t xbs, q4f_t f[Q4X][SEGMENTS],
    int64_t r0, int n, int64_t stride, int nx, const float *scales, int64_t ng, int64_t g0,
    int64_t G, int64_t L, int64_t ch, int64_t off, int h, int pair) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256i a[Q4X][SEGMENTS], p[Q4X][SEGMENTS];
    for (int i = 0; i < nx; i++) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(xb + i * xbs + 32 * h));
        for (int r = 0; r < n; r++) a[i][r] = c, p[i][r] = _mm256_setzero_si256();
    }
    const uint8_t *wp[SEGMENTS]; /* (each row's next chunk: no address arithmetic per load) */
    for (int r = 0; r < n; r++) wp[r] = W + (r0 + r * stride) * rb + off + 32 * h;
    for (int64_t t = 0; t < ch; t++) {
        int64_t nt, lanes, xo;
        q4_chunk(t, G, L, h, pair, &nt, &lanes, &xo);
        if (lanes > 0)
            for (int r = 0; r < n; r++) {
                const __m256i v = q4_load8(wp[r], lanes);
                const __m256i lo = _mm256_and_si256(v, m0f);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
                for (int i = 0; i < nx; i++) {
                    const __m256i *xp = (const __m256i *)(xb + i * xbs + xo);
                    p[i][r] = _mm256_add_epi16(p[i][r], _mm256_maddubs_epi16(lo, xp[0]));
                    p[i][r] = _mm256_add_epi16(p[i][r], _mm256_maddubs_epi16(hi, xp[2]));
                }
            }
        for (int r = 0; r < n; r++) wp[r] += 4 * nt;
        if (t % 4 == 3 || t == ch - 1)
            for (int i = 0; i < nx; i++)
                for (int r = 0; r < n; r++) {
                    a[i][r] = _mm256_add_epi32(a[i][r], _mm256_madd_epi16(p[i][r], ones));
                    p[i][r] = _mm256_setzero_si256();
                }
    }
    const int64_t gl = G - 8 * h > 8 ? 8 : G - 8 * h;
    for (int r = 0; r < n; r++) {
        const __m256 s = q4_load8f(scales + (r0 + r * stride) * ng + g0 + 8 * h, gl);
        for (int i = 0; i < nx; i++)
            f[i][r] = q4f_add8(f[i][r], _mm256_mul_ps(_mm256_cvtepi32_ps(a[i][r]), s));
    }
}
#endif

#if QVNNI == 512
/* One block on zmm: a block of more than 8 groups (masked where some are absent), or of 8
 * full ones read two chunks per load (`pair`). */
static inline __attribute__((always_inline)) void q4_block_zmm(
    const uint8_t *W, int64_t rb, const int8_t *xb, int64_t xbs, q4f_t f[Q4X][SEGMENTS],
    int64_t r0, int n, int64_t stride, int nx, const float *scales, int64_t ng, int64_t g0,
    int64_t G, int64_t L, int64_t ch, int64_t off, int pair) {
    const __m512i m0f = _mm512_set1_epi8(0x0F), mf0 = _mm512_set1_epi8((char)0xF0);
    __m512i a[Q4X][SEGMENTS], b[Q4X][SEGMENTS];
    for (int i = 0; i < nx; i++) {
        const __m512i c = _mm512_loadu_si512((const void *)(xb + i * xbs));
        for (int r = 0; r < n; r++) a[i][r] = c, b[i][r] = _mm512_setzero_si512();
    }
    const int64_t steps = pair ? ch / 2 : ch;
    int64_t wo = off;
    for (int64_t t = 0; t < steps; t++) {
        const int64_t lanes = pair ? 16 : 8 * t < L ? G : G - 1;
        const __mmask16 m = (__mmask16)((1u << lanes) - 1);
        for (int r = 0; r < n; r++) {
            const __m512i v = _mm512_maskz_loadu_epi32(m, W + (r0 + r * stride) * rb + wo);
            const __m512i lo = _mm512_and_si512(v, m0f), hi = _mm512_and_si512(v, mf0);
            for (int i = 0; i < nx; i++) {
                const __m512i *xp = (const __m512i *)(xb + i * xbs + 64 + 128 * t);
                DPBUSD_ASM(a[i][r], lo, xp[0]);
                DPBUSD_ASM(b[i][r], hi, xp[1]);
            }
        }
        wo += 4 * lanes;
    }
    for (int r = 0; r < n; r++) {
        const float *sp = scales + (r0 + r * stride) * ng + g0;
        if (pair) {
            const __m256 s = _mm256_loadu_ps(sp);
            for (int i = 0; i < nx; i++) {
                const __m512i tot = _mm512_add_epi32(a[i][r], _mm512_srai_epi32(b[i][r], 4));
                const __m256i t8 = _mm256_add_epi32(_mm512_castsi512_si256(tot),
                                                    _mm512_extracti64x4_epi64(tot, 1));
                f[i][r] = q4f_add8(f[i][r], _mm256_mul_ps(_mm256_cvtepi32_ps(t8), s));
            }
        } else {
            const __m512 s = _mm512_maskz_loadu_ps((__mmask16)((1u << G) - 1), sp);
            for (int i = 0; i < nx; i++) {
                const __m512i tot = _mm512_add_epi32(a[i][r], _mm512_srai_epi32(b[i][r], 4));
                f[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), s, f[i][r]);
            }
        }
    }
}
#endif

/* acc[i * out + r] = xs[i] * sum_g s[r, g] sum_{k in g} q[r, k] xq[i, k] for the n (<=
 * SEGMENTS) weight rows r0 + j * stride and nx (<= Q4X) rows of x (q4_prepare_x's). */
static inline __attribute__((always_inline)) void q4_rows_vnni(
    const uint8_t *W, const int8_t *xb, int64_t xbs, const float *xs, float *acc, int64_t r0,
    int n, int64_t stride, int nx, int64_t in, int64_t out, const float *scales, int64_t group) {
    const int64_t rb = in / 2, ng = (in + group - 1) / group, ch = group / 8;
    const int64_t bx = q4_xblock(group);
    q4f_t f[Q4X][SEGMENTS];
    for (int i = 0; i < Q4X; i++)
        for (int r = 0; r < SEGMENTS; r++) f[i][r] = Q4F_ZERO;
    int64_t off = 0;
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        int64_t G, L;
        q4_block(g0, ng, in, group, &G, &L);
        const int pair = G == 8 && L == group;
        const int8_t *xblk = xb + (g0 / 16) * bx;
#if QVNNI == 512
        if (G > 8 || pair)
            q4_block_zmm(W, rb, xblk, xbs, f, r0, n, stride, nx, scales, ng, g0, G, L, ch, off,
                         pair);
        else
            q4_block_ymm(W, rb, xblk, xbs, f, r0, n, stride, nx, scales, ng, g0, G, L, ch, off,
                         0, 0);
#else
        q4_block_ymm(W, rb, xblk, xbs, f, r0, n, stride, nx, scales, ng, g0, G, L, ch, off, 0,
                     pair);
        if (G > 8)
            q4_block_ymm(W, rb, xblk, xbs, f, r0, n, stride, nx, scales, ng, g0, G, L, ch, off,
                         1, 0);
#endif
        off += L == group ? G * group / 2 : ((G - 1) * group + L) / 2;
    }
    for (int i = 0; i < nx; i++)
        for (int r = 0; r < n; r++) acc[i * out + r0 + r * stride] = q4f_sum(f[i][r]) * xs[i];
}

/* q4_rows_vnni on rows [i, i + nx) of x, n and nx constants where the tile is full. */
static inline __attribute__((always_inline)) void q4_rows_vnni_x(
    const uint8_t *W, const int8_t *xb, int64_t xbs, const float *xs, float *acc, int64_t r0,
    int n, int64_t stride, int64_t i, int nx, int64_t in, int64_t out, const float *scales,
    int64_t group) {
    const int8_t *xi = xb + i * xbs;
    const float *si = xs + i;
    float *ai = acc + i * out;
    if (n == SEGMENTS && nx == 2)
        q4_rows_vnni(W, xi, xbs, si, ai, r0, SEGMENTS, stride, 2, in, out, scales, group);
    else if (n == SEGMENTS)
        q4_rows_vnni(W, xi, xbs, si, ai, r0, SEGMENTS, stride, 1, in, out, scales, group);
    else q4_rows_vnni(W, xi, xbs, si, ai, r0, n, stride, nx, in, out, scales, group);
}
#endif /* QVNNI */

/* gemv_share for int4 weights: with VNNI, x rounded to int8 in the kernel's order (this
 * thread's own copy: no barrier) and q4_rows_vnni; else, or for a row of x that is not
 * finite, q4_rows_f32. */
static void q4gemv_share(const void *W, const float *restrict x, float *restrict acc, int64_t nx,
                         int64_t out, int64_t in, int64_t tid, int64_t nth, int64_t *lo,
                         int64_t *hi, const float *scales, int64_t group) {
    const int64_t r0 = out * tid / nth, r1 = out * (tid + 1) / nth;
    const int64_t seg = (r1 - r0) / SEGMENTS, rest = r0 + SEGMENTS * seg;
    *lo = r0;
    *hi = r1;
    if (r1 <= r0) return;
#if QVNNI
    const int64_t ng = (in + group - 1) / group, xbs = ((ng + 15) / 16) * q4_xblock(group);
    int8_t *xb = aligned_alloc(64, (size_t)(nx * xbs + 64 * ((nx * 4 + 63) / 64)));
    if (xb) {
        float *xs = (float *)(xb + nx * xbs);
        if (q4_prepare_x(x, nx, in, group, xb, xbs, xs)) {
            for (int64_t j = 0; j < seg; j++)
                for (int64_t i = 0; i < nx; i += Q4X)
                    q4_rows_vnni_x(W, xb, xbs, xs, acc, r0 + j, SEGMENTS, seg, i,
                                   (int)(nx - i >= Q4X ? Q4X : nx - i), in, out, scales, group);
            if (rest < r1)
                for (int64_t i = 0; i < nx; i += Q4X)
                    q4_rows_vnni_x(W, xb, xbs, xs, acc, rest, (int)(r1 - rest), 1, i,
                                   (int)(nx - i >= Q4X ? Q4X : nx - i), in, out, scales, group);
            free(xb);
            return;
        }
        free(xb);
    }
#endif
    for (int64_t j = 0; j < seg; j++)
        q4_rows_f32(W, x, acc, r0 + j, SEGMENTS, seg, nx, in, out, scales, group);
    if (rest < r1) q4_rows_f32(W, x, acc, rest, (int)(r1 - rest), 1, nx, in, out, scales, group);
}

/* -- AMX: Intel's tile multiply (Sapphire Rapids and later) --------------------------------
 * Why: a product of several rows of x is compute-bound on vpdpwssd (one zmm instruction
 * does 32 multiply-adds; 8 rows of x at batch 8 took ~13 ms per step of GPT-2 small on a
 * 2-core Xeon, where reading the int8 weights takes ~2.5), and a prompt's W8A8 product
 * through oneDNN's `_int_mm` (its s8s8 `gemm_api`, not its AMX kernels) reached ~450 G
 * multiply-adds/s. One tile instruction (`tdpbssd`) does 16 x 16 x 64 = 16384 int8
 * multiply-adds into exact int32 sums.
 *
 * Layout: the tile multiply is C[16 x N] += A[16 x 64 bytes] . B[16 x 4N bytes], B in
 * groups of 4 along the sum. A is 16 rows of the stored int8 weights read in place
 * (`tileloadd` with the row stride: no repacked copy of the weights), B holds up to 16
 * rows of x, packed per call (small: x is a few rows), so C[r][i] = sum_k W[r, k] x[i, k].
 * Tiles: 0-1 two blocks of 16 weight rows, 2-3 x, 4-7 the sums (32 weight rows x 16 rows
 * of x per pass over the inputs). Input widths must be a multiple of 64 (the tile's depth;
 * GPT-2's 768 / 3072 are), else the VNNI kernels run; output rows past the last full
 * block of 16 are padded (W8A8) or go to the VNNI kernels (few rows).
 *
 * Few rows (2 to 32) keep their int16 activations and results (see "quantized products
 * with int16 activations"): each int16 x is split exactly into x = 256 hi + lo (hi signed
 * int8, lo unsigned), `tdpbssd` sums q * hi and `tdpbsud` q * lo, and the result is
 * 256 sum_hi + sum_lo (exact in int64, one rounding to fp32; the VNNI kernels' lane sums
 * round a few times more: the two agree within a few fp32 ulps of the sum, far inside the
 * activations' own rounding bound). No overflow: |sum_hi| <= 127 * 128 * in and
 * |sum_lo| <= 127 * 255 * in stay below 2^31 up to in = 66304.
 *
 * The OS must grant the tile state: `gpt2kit_amx(1)` asks Linux once (arch_prctl
 * ARCH_REQ_XCOMP_PERM) and returns whether the kernels may run; `gpt2kit_amx(0)` turns
 * them off (tests compare both paths; GPT2KIT_AMX=0 in the environment does the same). */
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && QVNNI == 512
#define AMX 1
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_MIN_ROWS 4 /* rows of x from which the few-row products use tiles (measured: 3 rows 0.74x the VNNI kernels, 4 1.07x, 8 1.6x) */

static atomic_int amx_on = 0;

int gpt2kit_amx(int enable) {
    if (enable >= 0) {
        int ok = 0;
        if (enable) /* (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) */
            ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
        atomic_store(&amx_on, ok);
    }
    return atomic_load(&amx_on);
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) amx_config;

/* Every tile 16 rows of 64 bytes (x padded with zero rows of x): one configuration. */
static inline void amx_begin(void) {
    amx_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
}

/* Rows [i0, i0 + 16) of x (int8 [nx, in], or int16 split into hi / lo when `x16`) as B
 * tiles: for 64-input step s, tile s (int8) or tiles 2s (hi) and 2s + 1 (lo) of 1024
 * bytes at dst; byte 64 j + 4 m + c is input 64 s + 4 j + c of row i0 + m (0 past nx). */
static void amx_pack_x(const void *x, int x16, int64_t i0, int64_t nx, int64_t in,
                       int8_t *restrict dst) {
    const int64_t steps = in / 64, per = x16 ? 2048 : 1024;
    const int64_t rows = nx - i0 < 16 ? nx - i0 : 16;
    if (rows < 16) memset(dst, 0, (size_t)(steps * per));
    for (int64_t m = 0; m < rows; m++)
        for (int64_t s = 0; s < steps; s++) {
            int8_t *t = dst + s * per + 4 * m;
            if (x16) {
                const int16_t *v = (const int16_t *)x + (i0 + m) * in + 64 * s;
                for (int64_t j = 0; j < 16; j++) {
                    uint32_t hi = 0, lo = 0;
                    for (int c = 0; c < 4; c++) {
                        hi |= (uint32_t)(uint8_t)(v[4 * j + c] >> 8) << (8 * c); /* (arithmetic) */
                        lo |= (uint32_t)(v[4 * j + c] & 0xff) << (8 * c);
                    }
                    memcpy(t + 64 * j, &hi, 4);
                    memcpy(t + 1024 + 64 * j, &lo, 4);
                }
            } else {
                const int8_t *v = (const int8_t *)x + (i0 + m) * in + 64 * s;
                for (int64_t j = 0; j < 16; j++) memcpy(t + 64 * j, v + 4 * j, 4);
            }
        }
}

/* The W8A8 epilogue of one tile c (c[16 r + i]: weight row n0 + r, row m0 + i of x):
 * y[m, n] = bias[n] + ((float)c * sw[n]) * sx[m] with one FMA per value, as
 * gpt2kit_scale_rows (the same roundings); column i of c gathered per row of y. */
static inline void amx_scale_tile(const int32_t *c, float *y, int64_t m0, int64_t M, int64_t n0,
                                  int64_t N, const float *sx, const float *sw, const float *bias) {
    if (n0 >= N) return; /* (the padded rows of the last block) */
    const __m512i across = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(16));
    const __mmask16 k = N - n0 >= 16 ? 0xffff : (__mmask16)((1u << (N - n0)) - 1);
    const __m512 w = _mm512_maskz_loadu_ps(k, sw + n0);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + n0) : _mm512_setzero_ps();
    for (int64_t i = 0; i < 16 && m0 + i < M; i++) {
        const __m512i a = _mm512_i32gather_epi32(_mm512_add_epi32(across, _mm512_set1_epi32((int)i)), c, 4);
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), w), s = _mm512_set1_ps(sx[m0 + i]);
        const __m512 o = bias ? _mm512_fmadd_ps(v, s, b) : _mm512_mul_ps(v, s);
        _mm512_mask_storeu_ps(y + (m0 + i) * N + n0, k, o);
    }
}

/* One pass of the 2 x 2 tile blocking over `steps` 64-input steps, stored to c[0..4):
 * c[q] = sum over steps of A_(q / 2) . B_(q % 2), A_0 / A_1 the 16 weight rows at a0 / a1
 * (row stride lda), B_0 / B_1 the packed x tiles at b0 / b1 (`bstep` bytes per step).
 * B_1 holds unsigned bytes where `b1_unsigned` (the low bytes of int16 x: tdpbsud), else
 * signed ones (a second block of int8 x). `next`: 32 lines of it prefetched per step
 * (NULL: none). */
static inline __attribute__((always_inline)) void amx_pass(
    const int8_t *a0, const int8_t *a1, int64_t lda, const int8_t *b0, const int8_t *b1,
    int64_t bstep, int64_t steps, const int b1_unsigned, const char *next, int32_t c[4][256]) {
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (int64_t s = 0; s < steps; s++) {
        if (next)
            for (int l = 0; l < 32; l++) _mm_prefetch(next + 2048 * s + 64 * l, _MM_HINT_T0);
        _tile_loadd(0, a0 + 64 * s, lda);
        _tile_loadd(1, a1 + 64 * s, lda);
        _tile_loadd(2, b0 + bstep * s, 64);
        _tile_loadd(3, b1 + bstep * s, 64);
        _tile_dpbssd(4, 0, 2);
        _tile_dpbssd(6, 1, 2);
        if (b1_unsigned) {
            _tile_dpbsud(5, 0, 3);
            _tile_dpbsud(7, 1, 3);
        } else {
            _tile_dpbssd(5, 0, 3);
            _tile_dpbssd(7, 1, 3);
        }
    }
    _tile_stored(4, c[0], 64);
    _tile_stored(5, c[1], 64);
    _tile_stored(6, c[2], 64);
    _tile_stored(7, c[3], 64);
}

/* y[i * out + r] = scales[r] xs[i] (256 sum_hi + sum_lo) for weight rows [r0, r0 + 32 * nb)
 * and the nx (<= 16) rows of x packed at xp (int16, amx_pack_x). */
static void amx_rows16(const int8_t *W, const int8_t *xp, const float *xs, float *acc,
                       int64_t r0, int64_t nb, int64_t nx, int64_t in, int64_t out,
                       const float *scales) {
    const int64_t steps = in / 64;
    const __m512i across = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(16));
    int32_t c[4][256];
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *a0 = W + (r0 + 32 * b) * in;
        /* the next block (contiguous: 32 whole rows), 32 lines per step: tile loads step
         * through 32 rows at once, which the hardware prefetchers did not follow (the LM
         * head, streamed from memory, was slower on tiles than on VNNI without this) */
        const char *next = b + 1 < nb ? (const char *)(a0 + 32 * in) : NULL;
        amx_pass(a0, a0 + 16 * in, in, xp, xp + 1024, 2048, steps, 1, next, c);
        for (int h = 0; h < 2; h++) { /* row i of acc: column i of the tiles, gathered */
            const int64_t row = r0 + 32 * b + 16 * h;
            const __m512 w = _mm512_loadu_ps(scales + row);
            for (int64_t i = 0; i < nx; i++) {
                const __m512i at = _mm512_add_epi32(across, _mm512_set1_epi32((int)i));
                const __m512i hi = _mm512_i32gather_epi32(at, c[2 * h], 4);
                const __m512i lo = _mm512_i32gather_epi32(at, c[2 * h + 1], 4);
                /* 256 hi + lo in int64 (exact), rounded once to fp32 */
                const __m512i h0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(hi));
                const __m512i h1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(hi, 1));
                const __m512i l0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(lo));
                const __m512i l1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(lo, 1));
                const __m256 f0 = _mm512_cvtepi64_ps(_mm512_add_epi64(_mm512_slli_epi64(h0, 8), l0));
                const __m256 f1 = _mm512_cvtepi64_ps(_mm512_add_epi64(_mm512_slli_epi64(h1, 8), l1));
                const __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(f0), f1, 1);
                const __m512 s = _mm512_mul_ps(w, _mm512_set1_ps(xs[i]));
                _mm512_storeu_ps(acc + i * out + row, _mm512_mul_ps(v, s));
            }
        }
    }
}

/* The few-row int8 product of rows [r0, r1) on tiles: blocks of 32 weight rows, the rest
 * (fewer than 32) through the VNNI kernel. xq: x rounded to int16 (quantize_x16, in order).
 * Returns 0 (nothing done) where the scratch cannot be allocated. */
static int amx_qgemv_rows(const int8_t *W, const int16_t *xq, const float *xs, float *acc,
                          int64_t nx, int64_t out, int64_t in, int64_t r0, int64_t r1,
                          const float *scales) {
    const int64_t nb = (r1 - r0) / 32, blocks = (nx + 15) / 16, per = in / 64 * 2048;
    int8_t *xp = nb ? aligned_alloc(64, (size_t)(blocks * per)) : NULL;
    if (nb && !xp) return 0;
    if (nb) {
        for (int64_t j = 0; j < blocks; j++) amx_pack_x(xq, 1, 16 * j, nx, in, xp + j * per);
        amx_begin();
        for (int64_t j = 0; j < blocks; j++) {
            const int64_t n = nx - 16 * j < 16 ? nx - 16 * j : 16;
            amx_rows16(W, xp + j * per, xs + 16 * j, acc + 16 * j * out, r0, nb, n, in, out,
                       scales);
        }
        _tile_release();
        free(xp);
    }
    for (int64_t r = r0 + 32 * nb; r < r1; r += SEGMENTS) {
        const int n = r1 - r >= SEGMENTS ? SEGMENTS : (int)(r1 - r);
        for (int64_t i = 0; i < nx; i += QX)
            qrows_vnni_x(W, xq, xs, acc, r, n, 1, i, (int)(nx - i >= QX ? QX : nx - i), in, out,
                         scales, 0, 0, W_I8);
    }
    return 1;
}

/* y [M, N] = (xq W^T) * sx[m] * sw[n] (+ bias[n]), the W8A8 prompt product (xq [M, K] int8
 * with per-row scales sx, W [N, K] int8 with per-row scales sw), rounded exactly as
 * `torch._int_mm` followed by gpt2kit_scale_rows: the int32 sums are exact either way.
 * Returns 0 (nothing written) where the tiles are off or K is not a multiple of 64. */
__attribute__((optimize("fp-contract=off"))) /* (as gpt2kit_scale_rows) */
int gpt2kit_w8a8_amx(const int8_t *xq, const float *sx, const int8_t *W, const float *sw,
                     const float *bias, float *y, int64_t M, int64_t N, int64_t K, int nthreads) {
    if (!atomic_load(&amx_on) || K <= 0 || K % 64 || M <= 0 || N <= 0) return 0;
    const int64_t steps = K / 64, tb = (M + 31) / 32 * 2, nb = (N + 31) / 32;
    int8_t *xp = aligned_alloc(64, (size_t)(tb * steps * 1024));
    if (!xp) return 0;
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < tb; t++) amx_pack_x(xq, 0, 16 * t, M, K, xp + t * steps * 1024);
        int8_t *pad = NULL; /* the last block's rows, zero past N */
        amx_begin();
        int32_t c[4][256];
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t n0 = 32 * b;
            const int8_t *a0 = W + n0 * K;
            if (n0 + 32 > N) {
                if (!pad) pad = aligned_alloc(64, (size_t)(32 * K));
                if (!pad) {
                    failed = 1;
                    continue;
                }
                memset(pad, 0, (size_t)(32 * K));
                memcpy(pad, a0, (size_t)((N - n0) * K));
                a0 = pad;
            }
            const int8_t *a1 = a0 + 16 * K;
            for (int64_t t = 0; t < tb; t += 2) {
                const int8_t *b0 = xp + t * steps * 1024;
                amx_pass(a0, a1, K, b0, b0 + steps * 1024, 1024, steps, 0, NULL, c);
                for (int q = 0; q < 4; q++) /* tile q: weight rows 16 (q / 2), x rows 16 (q % 2) */
                    amx_scale_tile(c[q], y, 16 * (t + q % 2), M, n0 + 16 * (q / 2), N, sx, sw,
                                   bias);
            }
        }
        _tile_release();
        free(pad);
    }
    free(xp);
    return !failed;
}
#else
int gpt2kit_amx(int enable) {
    (void)enable;
    return 0;
}

int gpt2kit_w8a8_amx(const int8_t *xq, const float *sx, const int8_t *W, const float *sw,
                     const float *bias, float *y, int64_t M, int64_t N, int64_t K, int nthreads) {
    (void)xq, (void)sx, (void)W, (void)sw, (void)bias, (void)y, (void)M, (void)N, (void)K;
    (void)nthreads;
    return 0;
}
#endif

/* gemv_share for quantized weights (wk W_I8 or W_I4): with VNNI, x rounded to int16 (this
 * thread's own copy: no barrier) and the products above; else, or for a row of x that is
 * not finite, the fp32 ones. */
static inline __attribute__((always_inline)) void qgemv_share(
    const void *W, const float *restrict x, float *restrict acc, int64_t nx, int64_t out,
    int64_t in, int64_t tid, int64_t nth, int64_t *lo, int64_t *hi, const float *scales,
    int64_t group, const int wk) {
    if (wk == W_I4) {
        q4gemv_share(W, x, acc, nx, out, in, tid, nth, lo, hi, scales, group);
        return;
    }
#if QVNNI
    const int64_t r0 = out * tid / nth, r1 = out * (tid + 1) / nth;
    float *xs = r1 > r0 ? malloc(sizeof(float) * (size_t)nx + sizeof(int16_t) * (size_t)(nx * in))
                        : NULL;
    if (xs) {
        int16_t *xq = (int16_t *)(xs + nx);
        /* (int4 x in the kernel's order: 64-input blocks where AVX-512 reads 64 at a time) */
        const int64_t vz = wk == W_I4 && QVNNI == 512 && group % 32 == 0 ? in - in % 64 : 0;
        const int64_t v32 = wk == W_I4 ? in - in % 32 : 0;
        if (quantize_x16(x, nx, in, xq, xs, vz, v32)) {
#if AMX
            if (wk == W_I8 && nx >= AMX_MIN_ROWS && in % 64 == 0 && atomic_load(&amx_on) &&
                amx_qgemv_rows((const int8_t *)W, xq, xs, acc, nx, out, in, r0, r1, scales)) {
                free(xs);
                *lo = r0;
                *hi = r1;
                return;
            }
#endif
            const int64_t seg = (r1 - r0) / SEGMENTS, rest = r0 + SEGMENTS * seg;
            const int tile = wk == W_I4 ? QX4 : QX;
            for (int64_t j = 0; j < seg; j++)
                for (int64_t i = 0; i < nx; i += tile)
                    qrows_vnni_x(W, xq, xs, acc, r0 + j, SEGMENTS, seg, i,
                                 (int)(nx - i >= tile ? tile : nx - i), in, out, scales, group, vz, wk);
            if (rest < r1)
                for (int64_t i = 0; i < nx; i += tile)
                    qrows_vnni_x(W, xq, xs, acc, rest, (int)(r1 - rest), 1, i,
                                 (int)(nx - i >= tile ? tile : nx - i), in, out, scales, group, vz, wk);
            free(xs);
            *lo = r0;
            *hi = r1;
            return;
        }
        free(xs);
    }
#endif
    qgemv_share_f32(W, x, acc, nx, out, in, tid, nth, lo, hi, scales, group, wk);
}

/* Which quantized-product kernels this build has: 512 / 256 (int16 activations, VNNI on
 * zmm / ymm), 0 (fp32 activations). */
int gpt2kit_qvnni(void) { return QVNNI; }

/* Whether those kernels emulate the VNNI dot instructions with AVX2 ones (no VNNI). */
int gpt2kit_qvnni_emulated(void) { return QVNNI_EMULATED; }

/* Quantized weights (wk W_I8: q [out, in] int8, scales [out]; W_I4: [out, in / 2] bytes,
 * scales [out, ceil(in / group)]), fp32 x [nx, in], y [nx, out] = x (q * s)^T (+ b). */
void gpt2kit_qgemv(const void *W, const float *scales, int64_t group, int wk, const float *x,
                   const float *b, float *y, int64_t nx, int64_t out, int64_t in, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        int64_t lo, hi;
        const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
        if (wk == W_I8) qgemv_share(W, x, y, nx, out, in, tid, nth, &lo, &hi, scales, 0, W_I8);
        else qgemv_share(W, x, y, nx, out, in, tid, nth, &lo, &hi, scales, group, W_I4);
        if (b) /* (this thread's rows, while they are in cache) */
            for (int64_t i = 0; i < nx; i++)
                for (int64_t r = lo; r < hi; r++) y[i * out + r] += b[r];
    }
}

/* The fp32 matrix q * s [out, in] of quantized weights (wk W_I8 / W_I4, layouts as
 * gpt2kit_qgemv), rows split between threads: what a prompt's product multiplies with
 * BLAS (compute-bound there, where a fresh widening per pair of rows would cost more). */
void gpt2kit_dequantize(const void *W, const float *scales, int64_t group, int wk, float *out,
                        int64_t rows, int64_t in, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * in;
        if (wk == W_I8) {
            const int8_t *q = (const int8_t *)W + r * in;
            const float s = scales[r];
            const v8f sv = {s, s, s, s, s, s, s, s};
            int64_t k = 0;
            for (; k + 8 <= in; k += 8) {
                const v8f v = __builtin_convertvector(widen_i8(q + k), v8f) * sv;
                memcpy(o + k, &v, sizeof v);
            }
            for (; k < in; k++) o[k] = (float)q[k] * s;
        } else {
            const int64_t ng = (in + group - 1) / group;
            q4_deq_row((const uint8_t *)W + r * (in / 2), in, group, scales + r * ng, o);
        }
    }
}

/* fp32: y = x W^T (+ b). x [nx, in], W [out, in] row-major, y [nx, out]; b may be NULL. */
void gpt2kit_gemv_f32(const float *W, const float *x, const float *b, float *y, int64_t nx,
                      int64_t out, int64_t in, int nthreads) {
    gemv_impl(W, x, y, nx, out, in, nthreads, 0);
    if (b)
        for (int64_t i = 0; i < nx; i++)
            for (int64_t r = 0; r < out; r++) y[i * out + r] += b[r];
}

/* bf16 weights, input and output; fp32 sums, one rounding per output (bias added first).
 * Returns nonzero when out of memory. */
int gpt2kit_gemv_bf16(const uint16_t *W, const uint16_t *x, const uint16_t *b, uint16_t *y,
                      int64_t nx, int64_t out, int64_t in, int nthreads) {
    float *buf = malloc(sizeof(float) * (size_t)(nx * (in + out)));
    if (!buf) return 1;
    float *xf = buf, *acc = buf + nx * in;
    for (int64_t k = 0; k < nx * in; k++) xf[k] = bf16_to_f32(x[k]);
    gemv_impl(W, xf, acc, nx, out, in, nthreads, 1);
    for (int64_t i = 0; i < nx; i++)
        for (int64_t r = 0; r < out; r++) {
            const float v = acc[i * out + r];
            y[i * out + r] = f32_to_bf16(b ? v + bf16_to_f32(b[r]) : v);
        }
    free(buf);
    return 0;
}

#if defined(__AVX2__) && defined(__FMA__)
/* exp(x) for 8 floats, x <= 0 (clamped at -87, where it is ~1.6e-38, so 2^n stays normal):
 * x = n ln2 + r, |r| <= ln2 / 2, Cephes' expf polynomial (~1-2 ulp), times 2^n. NaN stays
 * NaN (maxps returns its second operand when one is NaN). */
static inline __attribute__((always_inline)) __m256 exp8_nonpositive(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* activate(v, ACT_GELU_TANH) for 8 floats, as v * sigmoid(2u) = 0.5 v (1 + tanh u)
 * (u = sqrt(2 / pi) (v + 0.044715 v^3)): with t = exp(-2|u|) <= 1, v / (1 + t) for u >= 0
 * and v t / (1 + t) below (no cancellation in 1 + tanh u for negative u). Against libm's
 * tanhf (the scalar path: 37k calls per 124M token, ~0.8 ms on one Zen 1 core, this ~0.15)
 * at most ~5e-7 apart. NaN stays NaN, +inf gives inf, -inf NaN, as in PyTorch. */
static inline __attribute__((always_inline)) __m256 gelu_tanh8(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                   _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), v3, v));
    const __m256 t = exp8_nonpositive(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, u)));
    const __m256 negative = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 num = _mm256_blendv_ps(v, _mm256_mul_ps(v, t), negative);
    const __m256 y = _mm256_div_ps(num, _mm256_add_ps(one, t));
    const __m256 minus_inf = _mm256_cmp_ps(v, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm256_blendv_ps(y, _mm256_set1_ps(NAN), minus_inf); /* (-inf * 0, as PyTorch) */
}
#endif

/* -- attention of one new token over the cache ------------------------------------------- */

static inline __attribute__((always_inline)) float load_t(const void *p, int64_t i, const int bf16) {
    return bf16 ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* One head of one row: store the token's key and value (from `row`, the row's q | k | v,
 * 3 * d elements) at position `pos` of the head's caches kh, vh [cap, hs], then
 * out[j] = sum_t softmax_t(scale * q . k_t) v_t[j] over t <= pos, into `out` (the head's
 * hs outputs). fp32 arithmetic, max-subtracted softmax as SDPA. `scratch`: pos + 1 +
 * 2 * hs floats. The row and `out` are bf16 when `io_bf16`, else fp32; the caches bf16
 * when `bf16`, and then the output is rounded to bf16 once (also when stored as fp32). */
static inline __attribute__((always_inline)) void attend_head(
    const void *row, void *kh, void *vh, void *out, int64_t h, int64_t d, int64_t hs,
    int64_t pos, float scale, float *restrict scratch, const int io_bf16, const int bf16) {
    const int64_t esize = bf16 ? 2 : 4, io_size = io_bf16 ? 2 : 4, len = pos + 1;
    const char *qh = (const char *)row + h * hs * io_size;
    char *knew = (char *)kh + pos * hs * esize, *vnew = (char *)vh + pos * hs * esize;
    if (io_bf16 == bf16) {
        memcpy(knew, qh + d * io_size, (size_t)(hs * esize));
        memcpy(vnew, qh + 2 * d * io_size, (size_t)(hs * esize));
    } else { /* fp32 row holding bf16 values (the fused step): exact conversion */
        for (int64_t j = 0; j < hs; j++) {
            ((uint16_t *)knew)[j] = f32_to_bf16(((const float *)qh)[d + j]);
            ((uint16_t *)vnew)[j] = f32_to_bf16(((const float *)qh)[2 * d + j]);
        }
    }
    float *scores = scratch, *q = scores + len, *acc = q + hs;
    for (int64_t j = 0; j < hs; j++) q[j] = load_t(qh, j, io_bf16) * scale;
    const int64_t hs8 = hs - hs % 8; /* vector part of a head (all of it for GPT-2) */
    /* q . k_t for 4 positions at a time: 4 independent chains of multiply-adds (one chain
     * per position waited on each multiply-add's latency: at batch 8 over ~80 positions
     * the attention was ~2.3 ms of a ~42 ms int8 step on Zen 1) */
    float top = -INFINITY;
    int64_t t = 0;
    for (; t + 4 <= len; t += 4) {
        v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        for (int64_t j = 0; j < hs8; j += 8) {
            v8f qv;
            memcpy(&qv, q + j, sizeof qv);
            s0 += qv * load8(kh, t * hs + j, bf16);
            s1 += qv * load8(kh, (t + 1) * hs + j, bf16);
            s2 += qv * load8(kh, (t + 2) * hs + j, bf16);
            s3 += qv * load8(kh, (t + 3) * hs + j, bf16);
        }
        float s[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
        for (int u = 0; u < 4; u++) {
            for (int64_t j = hs8; j < hs; j++) s[u] += q[j] * load_t(kh, (t + u) * hs + j, bf16);
            scores[t + u] = s[u];
            top = s[u] > top ? s[u] : top;
        }
    }
    for (; t < len; t++) {
        v8f sv = {0};
        for (int64_t j = 0; j < hs8; j += 8) {
            v8f qv;
            memcpy(&qv, q + j, sizeof qv);
            sv += qv * load8(kh, t * hs + j, bf16);
        }
        float s = hsum(sv);
        for (int64_t j = hs8; j < hs; j++) s += q[j] * load_t(kh, t * hs + j, bf16);
        scores[t] = s;
        top = s > top ? s : top;
    }
    float total = 0.0f;
    t = 0;
#if defined(__AVX2__) && defined(__FMA__)
    { /* (exp8_nonpositive: scores - top <= 0; summed in 8 lanes, then across them) */
        const __m256 top8 = _mm256_set1_ps(top);
        __m256 tot8 = _mm256_setzero_ps();
        for (; t + 8 <= len; t += 8) {
            const __m256 e = exp8_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + t), top8));
            _mm256_storeu_ps(scores + t, e);
            tot8 = _mm256_add_ps(tot8, e);
        }
        v8f lanes;
        memcpy(&lanes, &tot8, sizeof lanes);
        total = hsum(lanes);
    }
#endif
    for (; t < len; t++) total += scores[t] = expf(scores[t] - top);
    for (t = 0; t < len; t++) scores[t] /= total; /* (the probabilities p_t) */
    /* sum_t p_t v_t: 64 outputs at a time held in 8 vector accumulators over all t */
    int64_t j0 = 0;
    for (; j0 + 64 <= hs8; j0 += 64) {
        v8f a[8] = {{0}};
        for (t = 0; t < len; t++) {
            const float p = scores[t];
            const v8f pv = {p, p, p, p, p, p, p, p};
            for (int u = 0; u < 8; u++) a[u] += pv * load8(vh, t * hs + j0 + 8 * u, bf16);
        }
        memcpy(acc + j0, a, sizeof a);
    }
    for (int64_t j = j0; j < hs; j++) acc[j] = 0.0f;
    if (j0 < hs)
        for (t = 0; t < len; t++) {
            const float p = scores[t];
            const v8f pv = {p, p, p, p, p, p, p, p};
            for (int64_t j = j0; j < hs8; j += 8) {
                v8f av;
                memcpy(&av, acc + j, sizeof av);
                av += pv * load8(vh, t * hs + j, bf16);
                memcpy(acc + j, &av, sizeof av);
            }
            for (int64_t j = hs8; j < hs; j++) acc[j] += p * load_t(vh, t * hs + j, bf16);
        }
    for (int64_t j = 0; j < hs; j++) {
        if (io_bf16) ((uint16_t *)out)[j] = f32_to_bf16(acc[j]);
        else ((float *)out)[j] = bf16 ? bf16_to_f32(f32_to_bf16(acc[j])) : acc[j];
    }
}

/* For each of the B x H heads (qkv [B, 3 * H * hs], q | k | v; caches [B, H, cap, hs];
 * out [B, H * hs]): `attend_head`. Returns nonzero when out of memory. */
static inline __attribute__((always_inline)) int attend_impl(
    const void *qkv, void *kc, void *vc, void *out, int64_t B, int64_t H, int64_t hs,
    int64_t cap, int64_t pos, float scale, int nthreads, const int bf16) {
    const int64_t esize = bf16 ? 2 : 4, d = H * hs, len = pos + 1;
    float *buf = malloc(sizeof(float) * (size_t)(B * H * (len + 2 * hs)));
    if (!buf) return 1;
    /* ~len * hs * 2 multiply-adds per head: threads only pay off for long contexts */
    #pragma omp parallel for schedule(static) num_threads(nthreads) if (B * H * len * hs > 1 << 17)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        attend_head((const char *)qkv + b * 3 * d * esize, (char *)kc + bh * cap * hs * esize,
                    (char *)vc + bh * cap * hs * esize, (char *)out + (b * d + h * hs) * esize,
                    h, d, hs, pos, scale, buf + bh * (len + 2 * hs), bf16, bf16);
    }
    free(buf);
    return 0;
}

int gpt2kit_attend_one_f32(const float *qkv, float *kc, float *vc, float *out, int64_t B,
                           int64_t H, int64_t hs, int64_t cap, int64_t pos, float scale,
                           int nthreads) {
    return attend_impl(qkv, kc, vc, out, B, H, hs, cap, pos, scale, nthreads, 0);
}

int gpt2kit_attend_one_bf16(const uint16_t *qkv, uint16_t *kc, uint16_t *vc, uint16_t *out,
                            int64_t B, int64_t H, int64_t hs, int64_t cap, int64_t pos,
                            float scale, int nthreads) {
    return attend_impl(qkv, kc, vc, out, B, H, hs, cap, pos, scale, nthreads, 1);
}

/* -- the transformer blocks of one decoding step (a few rows) ---------------------------- */

/* Why one call for all blocks: between the products of a step PyTorch runs ~15 small ops
 * per block (layer norms, activation, residual adds, module calls, the products' own
 * calls), ~5-8 ms of a ~35 ms GPT-2 small fp32 step on this project's CPU, while the
 * memory bus idles. Here the threads stay in one parallel region for the whole step and
 * the small ops take microseconds between barriers. */

enum { ACT_GELU_TANH, ACT_GELU_ERF, ACT_RELU, ACT_SILU, ACT_QUICK_GELU, ACT_IDENTITY };

static inline float activate(float v, int act) {
    switch (act) {
    case ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case ACT_GELU_ERF: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    case ACT_RELU: return v < 0.0f ? 0.0f : v; /* (NaN stays NaN, as torch.relu) */
    case ACT_SILU: return v / (1.0f + expf(-v));
    case ACT_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    default: return v;
    }
}


/* What PyTorch stores after each op of a bf16 model: the value rounded to bf16. */
static inline __attribute__((always_inline)) float round_as(float v, const int bf16) {
    return bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}

static inline __attribute__((always_inline)) float bias_at(const void *b, int64_t r, const int bf16) {
    return b ? load_t(b, r, bf16) : 0.0f;
}

/* y = LayerNorm(x) with weight w and bias b (mean and variance summed in double). */
static inline __attribute__((always_inline)) void layer_norm(
    const float *restrict x, const void *w, const void *b, float *restrict y, int64_t d,
    float eps, const int bf16) {
    double mean = 0.0, var = 0.0;
    for (int64_t k = 0; k < d; k++) mean += x[k];
    mean /= (double)d;
    for (int64_t k = 0; k < d; k++) var += (x[k] - mean) * (x[k] - mean);
    const float m = (float)mean, rstd = (float)(1.0 / sqrt(var / (double)d + eps));
    for (int64_t k = 0; k < d; k++)
        y[k] = round_as((x[k] - m) * rstd * load_t(w, k, bf16) + bias_at(b, k, bf16), bf16);
}

enum { EPI_BIAS, EPI_ACTIVATE, EPI_RESIDUAL };

/* The whole step's barriers (blocks_impl: ~7 per layer). Why not `omp barrier`: libgomp
 * spins only while it manages no more threads than there are CPUs; past that (a second
 * team, e.g. decoding on a thread other than the one that first ran OpenMP, as a server
 * does, or another library's parallel regions in the process) every barrier wait becomes
 * a futex sleep and wake. On the 2-core Zen 4 EPYC, an int8 124M step on a second Python
 * thread took 8.4 ms against 5.4-5.8 on the main thread (~40 futex waits per token per
 * thread). Here a thread spins (pause) and yields its CPU only after STEP_SPINS rounds, so
 * an oversubscribed machine still makes progress. Sense-reversing: one shared count and
 * sense, each thread's own sense flipped per barrier; the last to arrive resets the count
 * and releases the rest (release / acquire: what was written before the barrier is
 * visible after it). */
#ifndef STEP_SPINS
#define STEP_SPINS 4096
#endif
typedef struct {
    atomic_int count, sense;
} step_barrier;

static inline void step_wait(step_barrier *b, int *sense, int64_t nth) {
    const int s = !*sense;
    *sense = s;
    if (nth <= 1) return;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->sense, s, memory_order_release);
        return;
    }
    for (unsigned spins = 0; atomic_load_explicit(&b->sense, memory_order_acquire) != s;) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (++spins >= STEP_SPINS) sched_yield();
    }
}

/* acc [nx, out] = xin [nx, in] W^T, this thread's share of the weight rows, then on those
 * rows of each row of x: add the bias (EPI_BIAS), then apply the activation (EPI_ACTIVATE)
 * or add the result to x [nx, out] (EPI_RESIDUAL); ends with a barrier. */
static inline __attribute__((always_inline)) void product(
    const void *W, const float *restrict xin, float *restrict acc, const void *b,
    float *restrict x, int64_t nx, int64_t out, int64_t in, int kind, int act, int64_t tid,
    int64_t nth, const float *qs, int64_t group, const int wk, const int bf16, step_barrier *bar,
    int *sense) {
    int64_t lo, hi;
    if (wk >= W_I8) qgemv_share(W, xin, acc, nx, out, in, tid, nth, &lo, &hi, qs, group, wk);
    else gemv_share(W, xin, acc, nx, out, in, tid, nth, &lo, &hi, bf16);
    for (int64_t i = 0; i < nx; i++) {
        float *ai = acc + i * out, *xi = x + i * out;
        int64_t r = lo;
#if defined(__AVX2__) && defined(__FMA__)
        if (kind == EPI_ACTIVATE && act == ACT_GELU_TANH && !bf16) {
            /* every row through gelu_tanh8, the last few via a buffer: a row's value must
             * not depend on how the rows were split between threads */
            for (; r < hi; r += 8) {
                const int64_t m = hi - r < 8 ? hi - r : 8;
                float a8[8] = {0}, b8[8] = {0};
                memcpy(a8, ai + r, sizeof(float) * (size_t)m);
                if (b) memcpy(b8, (const float *)b + r, sizeof(float) * (size_t)m);
                _mm256_storeu_ps(a8,
                                 gelu_tanh8(_mm256_add_ps(_mm256_loadu_ps(a8), _mm256_loadu_ps(b8))));
                memcpy(ai + r, a8, sizeof(float) * (size_t)m);
            }
        }
#endif
        for (; r < hi; r++) {
            const float v = round_as(ai[r] + bias_at(b, r, bf16), bf16);
            if (kind == EPI_BIAS) ai[r] = v;
            else if (kind == EPI_ACTIVATE) ai[r] = round_as(activate(v, act), bf16);
            else xi[r] = round_as(xi[r] + v, bf16);
        }
    }
    step_wait(bar, sense, nth);
}

/* The ends of a whole step (`head` of blocks_impl, NULL for the blocks alone): the tokens'
 * embeddings in, their logits out. Pointers: token embedding wte [vocab, d], position
 * embedding wpe [n_positions, d], final norm weight and bias, LM head weight [vocab, d] and
 * bias (may be NULL), fp32 logits [B, vocab], and bf16 logits [B, vocab] (NULL for an fp32
 * model). */
enum { HEAD_WTE, HEAD_WPE, HEAD_LN_W, HEAD_LN_B, HEAD_LM_W, HEAD_LM_B, HEAD_OUT, HEAD_OUT_BF16 };

/* Runs the n_layer pre-norm blocks of GPT-2 on the hidden states x [B, d] of B rows' new
 * tokens, all at position `pos` (in and out; fp32, or bf16 when `bf16`); with `head`, on
 * the embeddings of `tokens` [B] instead, followed by the final norm (`head_eps`) and the LM
 * head's `vocab` logits per row (x_io is then not read or written). Per layer, `p` holds 12
 * pointers: ln_1 weight, bias; c_attn weight [3d, d], bias; attn c_proj weight [d, d], bias;
 * ln_2 weight, bias; c_fc weight [inner, d], bias; mlp c_proj weight [d, inner], bias
 * (biases may be NULL); `kv` the layer's key and value caches [B, H, cap, d / H], where the
 * tokens' keys and values are written. `scales` holds each layer's attention scale; `act`
 * an ACT_ code. Each product reads its weights once for all B rows (gemv_share's tiles);
 * each row's values are those of the row alone (no sum mixes rows). Values are rounded to
 * bf16 where PyTorch would store a bf16 tensor. Returns nonzero when out of memory. */
static inline __attribute__((always_inline)) int blocks_impl(
    void *const *p, void *const *kv, const float *scales, int64_t n_layer, void *x_io,
    int64_t B, int64_t d, int64_t H, int64_t inner, int64_t cap, int64_t pos, float eps,
    int act, int nthreads, void *const *head, const int64_t *tokens, int64_t vocab,
    float head_eps, const float *const *qs, int64_t group, const int wk, const int bf16) {
    /* (wk: the projections' W_ code; with W_I8 / W_I4, `qs` holds each layer's four
     * projections' scales, then the LM head's and the token embedding's: NULL for a
     * floating-point embedding, else it is a quantized matrix of the same kind) */
    const int64_t hs = d / H, esize = bf16 ? 2 : 4, scratch = pos + 1 + 2 * hs;
    float *buf = malloc(sizeof(float) * (size_t)(B * (6 * d + inner + H * scratch)));
    if (!buf) return 1;
    float *x = buf, *xn = x + B * d, *qkv = xn + B * d, *y = qkv + 3 * B * d, *h = y + B * d;
    float *scr = h + B * inner;
    for (int64_t i = 0; i < B; i++) {
        float *xi = x + i * d;
        if (head && wk >= W_I8 && qs[4 * n_layer + 1]) { /* a quantized (tied) embedding row */
            const float *s = qs[4 * n_layer + 1];
            const int64_t token = tokens[i];
            if (wk == W_I4) /* (the row's q * s into xn, as the module path's dequantize) */
                q4_deq_row((const uint8_t *)head[HEAD_WTE] + token * (d / 2), d, group,
                           s + token * ((d + group - 1) / group), xn);
            for (int64_t k = 0; k < d; k++) {
                const float e =
                    wk == W_I8 ? (float)((const int8_t *)head[HEAD_WTE])[token * d + k] * s[token]
                               : xn[k];
                xi[k] = e + load_t(head[HEAD_WPE], pos * d + k, bf16);
            }
        } else if (head) /* wte(token) + wpe(pos), rounded as the module path's sum */
            for (int64_t k = 0; k < d; k++)
                xi[k] = round_as(load_t(head[HEAD_WTE], tokens[i] * d + k, bf16) +
                                     load_t(head[HEAD_WPE], pos * d + k, bf16),
                                 bf16);
        else
            for (int64_t k = 0; k < d; k++) xi[k] = load_t(x_io, i * d + k, bf16);
    }
    step_barrier bar = {0, 0};
    #pragma omp parallel num_threads(nthreads)
    {
        const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int sense = 0;
        for (int64_t l = 0; l < n_layer; l++) {
            void *const *w = p + 12 * l;
            #pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < B; i++)
                layer_norm(x + i * d, w[0], w[1], xn + i * d, d, eps, bf16);
            step_wait(&bar, &sense, nth);
            const float *const *ql = wk >= W_I8 ? qs + 4 * l : NULL;
            product(w[2], xn, qkv, w[3], x, B, 3 * d, d, EPI_BIAS, act, tid, nth,
                    ql ? ql[0] : NULL, group, wk, bf16, &bar, &sense);
            #pragma omp for schedule(static) nowait
            for (int64_t bh = 0; bh < B * H; bh++) {
                const int64_t i = bh / H, hd = bh % H;
                attend_head(qkv + i * 3 * d, (char *)kv[2 * l] + bh * cap * hs * esize,
                            (char *)kv[2 * l + 1] + bh * cap * hs * esize, y + i * d + hd * hs,
                            hd, d, hs, pos, scales[l], scr + bh * scratch, 0, bf16);
            }
            step_wait(&bar, &sense, nth);
            product(w[4], y, xn, w[5], x, B, d, d, EPI_RESIDUAL, act, tid, nth,
                    ql ? ql[1] : NULL, group, wk, bf16, &bar, &sense);
            #pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < B; i++)
                layer_norm(x + i * d, w[6], w[7], xn + i * d, d, eps, bf16);
            step_wait(&bar, &sense, nth);
            product(w[8], xn, h, w[9], x, B, inner, d, EPI_ACTIVATE, act, tid, nth,
                    ql ? ql[2] : NULL, group, wk, bf16, &bar, &sense);
            product(w[10], h, y, w[11], x, B, d, inner, EPI_RESIDUAL, act, tid, nth,
                    ql ? ql[3] : NULL, group, wk, bf16, &bar, &sense);
        }
        if (head) {
            #pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < B; i++)
                layer_norm(x + i * d, head[HEAD_LN_W], head[HEAD_LN_B], xn + i * d, d, head_eps,
                           bf16);
            step_wait(&bar, &sense, nth);
            product(head[HEAD_LM_W], xn, head[HEAD_OUT], head[HEAD_LM_B], x, B, vocab, d,
                    EPI_BIAS, act, tid, nth, wk >= W_I8 ? qs[4 * n_layer] : NULL, group, wk, bf16,
                    &bar, &sense);
        }
    }
    if (head && head[HEAD_OUT_BF16]) /* (values already rounded: the conversion is exact) */
        for (int64_t r = 0; r < B * vocab; r++)
            ((uint16_t *)head[HEAD_OUT_BF16])[r] = f32_to_bf16(((const float *)head[HEAD_OUT])[r]);
    else if (!head)
        for (int64_t k = 0; k < B * d; k++) {
            if (bf16) ((uint16_t *)x_io)[k] = f32_to_bf16(x[k]);
            else ((float *)x_io)[k] = x[k];
        }
    free(buf);
    return 0;
}

int gpt2kit_blocks_f32(void *const *p, void *const *kv, const float *scales, int64_t n_layer,
                       float *x, int64_t B, int64_t d, int64_t H, int64_t inner, int64_t cap,
                       int64_t pos, float eps, int act, int nthreads, void *const *head,
                       const int64_t *tokens, int64_t vocab, float head_eps) {
    return blocks_impl(p, kv, scales, n_layer, x, B, d, H, inner, cap, pos, eps, act, nthreads,
                       head, tokens, vocab, head_eps, NULL, 0, W_F32, 0);
}

int gpt2kit_blocks_bf16(void *const *p, void *const *kv, const float *scales, int64_t n_layer,
                        uint16_t *x, int64_t B, int64_t d, int64_t H, int64_t inner, int64_t cap,
                        int64_t pos, float eps, int act, int nthreads, void *const *head,
                        const int64_t *tokens, int64_t vocab, float head_eps) {
    return blocks_impl(p, kv, scales, n_layer, x, B, d, H, inner, cap, pos, eps, act, nthreads,
                       head, tokens, vocab, head_eps, NULL, 0, W_BF16, 1);
}

/* The fp32 blocks (and head) of a model whose projections (and LM head) are quantized:
 * wk W_I8 or W_I4, `qs` as in blocks_impl. */
int gpt2kit_blocks_q(void *const *p, void *const *kv, const float *scales, int64_t n_layer,
                     float *x, int64_t B, int64_t d, int64_t H, int64_t inner, int64_t cap,
                     int64_t pos, float eps, int act, int nthreads, void *const *head,
                     const int64_t *tokens, int64_t vocab, float head_eps,
                     const float *const *qs, int64_t group, int wk) {
    if (wk == W_I8)
        return blocks_impl(p, kv, scales, n_layer, x, B, d, H, inner, cap, pos, eps, act,
                           nthreads, head, tokens, vocab, head_eps, qs, group, W_I8, 0);
    return blocks_impl(p, kv, scales, n_layer, x, B, d, H, inner, cap, pos, eps, act, nthreads,
                       head, tokens, vocab, head_eps, qs, group, W_I4, 0);
}

/* Prompt products with int8 activations (gpt2kit.quantization `prompt_product`, the
 * decoder's prompt path): each row of x quantized to int8 with its own scale, and the
 * int32 sums of the int8 GEMM (PyTorch's `_int_mm`, between the two) scaled back. One
 * pass over the rows each, where the PyTorch ops take five and three (each a parallel
 * region: under load, where a thread of the pool is descheduled, those dominated the
 * prompt). The same values as the PyTorch ops: scale = max|x| / 127 (1 for a zero row,
 * NaN for a row with a NaN or an infinity), q = rint(x / scale) (round half to even, as
 * torch.round); y = (float)acc * sw, then bias + y * sx in one FMA (as torch.addcmul), else y * sx. */
void gpt2kit_quantize_rows(const float *x, int8_t *q, float *scale, int64_t rows, int64_t n,
                           int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        int8_t *qr = q + r * n;
        v8f top8 = {0};
        v8i32 finite = {-1, -1, -1, -1, -1, -1, -1, -1};
        const v8u32 mask = {0x7fffffffu, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu,
                            0x7fffffffu, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu};
        const v8f inf = {INFINITY, INFINITY, INFINITY, INFINITY,
                         INFINITY, INFINITY, INFINITY, INFINITY};
        int64_t k = 0;
        for (; k + 8 <= n; k += 8) {
            v8u32 bits;
            memcpy(&bits, xr + k, sizeof bits);
            bits &= mask;
            v8f a;
            memcpy(&a, &bits, sizeof a);
            finite &= (v8i32)(a < inf); /* (false for NaN and infinities) */
            const v8i32 more = (v8i32)(a > top8);
            top8 = (v8f)(((v8i32)a & more) | ((v8i32)top8 & ~more));
        }
        float top = 0;
        int bad = 0;
        for (int i = 0; i < 8; i++) {
            top = top8[i] > top ? top8[i] : top;
            bad |= !finite[i];
        }
        for (; k < n; k++) {
            const float a = fabsf(xr[k]);
            bad |= !(a < INFINITY);
            top = a > top ? a : top;
        }
        const float s = bad ? NAN : (top > 0 ? top / 127.0f : 1.0f);
        scale[r] = s;
        if (bad) {
            memset(qr, 0, (size_t)n);
            continue;
        }
        for (int64_t j = 0; j < n; j++) qr[j] = (int8_t)rintf(xr[j] / s);
    }
}

__attribute__((optimize("fp-contract=off"))) /* (the product v * sw stays rounded) */
void gpt2kit_scale_rows(const int32_t *acc, const float *sx, const float *sw, const float *bias,
                        float *y, int64_t rows, int64_t n, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *a = acc + r * n;
        float *o = y + r * n;
        const float s = sx[r];
        if (bias) {
            for (int64_t j = 0; j < n; j++) {
                const float v = (float)a[j] * sw[j];
                o[j] = fmaf(v, s, bias[j]); /* (torch.addcmul's vectorized loop: one FMA) */
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                const float v = (float)a[j] * sw[j];
                o[j] = v * s;
            }
        }
    }
}

/* ======================================================================================
 * LoRA (issue 20): each row's own low-rank update in a batch that mixes adapters.
 * Kept apart from the product kernels above (other work tunes those): nothing here reads
 * or changes them.
 *
 *   y[t] += sum over j in [lo[b], hi[b]) of (x[t] . A[j]) * Bt[j],   b = t / T
 *
 * x [n * T, in] (n batch rows of T tokens), y [n * T, out] updated in place; A [R, in] the
 * batch's adapters' A matrices stacked, Bt [R, out] their (B * scaling)^T stacked; batch
 * row b takes rows [lo[b], hi[b]) of those (lo == hi: no adapter here). Only a row's own
 * adapter is computed (r dot products and r row updates per token), where the stacked
 * PyTorch form multiplies every row by every adapter and masks. fp32.
 * ====================================================================================== */
void gpt2kit_lora_delta_f32(const float *x, const float *A, const float *Bt, const int32_t *lo,
                            const int32_t *hi, float *y, int64_t n, int64_t T, int64_t in,
                            int64_t out, int nthreads) {
    const int64_t rows = n * T;
    int64_t work = 0;
    for (int64_t b = 0; b < n; b++) work += (int64_t)(hi[b] - lo[b]) * T;
    work *= in + out;
    /* A decoding step's update (16 rows, r = 8, GPT-2 small: ~0.5 M multiply-adds, tens of
     * microseconds) runs on the calling thread: a parallel region would cost about as much,
     * and on a loaded machine the second thread may not run for milliseconds. A prompt's
     * update (many rows) shares its rows among the threads. */
#pragma omp parallel for num_threads(nthreads) schedule(static) if (work > (1 << 22))
    for (int64_t t = 0; t < rows; t++) {
        const int64_t b = t / T;
        const float *xt = x + t * in;
        float *yt = y + t * out;
        for (int64_t j = lo[b]; j < hi[b]; j++) {
            const float *a = A + j * in;
            float h = 0.f;
#pragma omp simd reduction(+ : h)
            for (int64_t k = 0; k < in; k++) h += xt[k] * a[k];
            const float *bt = Bt + j * out;
#pragma omp simd
            for (int64_t o = 0; o < out; o++) yt[o] += h * bt[o];
        }
    }
}
/* ===================================== end of LoRA ===================================== */

/* ======================================================================================
 * Selection over the vocabulary (generation's greedy pick and top-k sampling).
 * Why: PyTorch's CPU argmax and topk over a batch of logits are slow next to a quantized
 * step: on the 2-core Xeon, [8, 50257] fp32 took ~0.3 ms (argmax, dim=-1) and ~0.6-0.8 ms
 * (topk 50, twice per sampling step: the warper and the draw) where amax took 0.03 ms;
 * an int8 GPT-2 small step at batch 8 is ~10 ms. These run on the calling thread (tens of
 * microseconds: a parallel region's wake-up would cost as much), but top-k and the mask
 * share several long rows among the threads (SELECT_PARALLEL).
 *
 * Results: the index of a row's first maximum (torch.argmax's); top-k values sorted
 * descending, equal values by ascending index (torch.topk leaves that order unspecified).
 * A row holding NaN returns 0 (nothing written): the caller asks PyTorch (NaN sorts
 * highest there).
 * ====================================================================================== */
typedef struct {
    float v;
    int64_t i;
} scored;

static inline int scored_before(scored a, scored b) { return a.v > b.v || (a.v == b.v && a.i < b.i); }

/* Largest of x[0..n) (vectorised), and whether any is NaN. */
static float row_max(const float *x, int64_t n, int *nan) {
    v8f m8 = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    v8i32 bad = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f v;
        memcpy(&v, x + j, sizeof v);
        bad |= (v8i32)(v != v);
        const v8i32 more = (v8i32)(v > m8);
        m8 = (v8f)(((v8i32)v & more) | ((v8i32)m8 & ~more));
    }
    float m = -INFINITY;
    int any = 0;
    for (int l = 0; l < 8; l++) {
        m = m8[l] > m ? m8[l] : m;
        any |= bad[l];
    }
    for (; j < n; j++) {
        any |= x[j] != x[j];
        m = x[j] > m ? x[j] : m;
    }
    *nan = any;
    return m;
}

static inline __attribute__((always_inline)) v8f max8(v8f a, v8f b) {
    const v8i32 more = (v8i32)(b > a);
    return (v8f)(((v8i32)b & more) | ((v8i32)a & ~more));
}

/* The maxima of x's blocks of 64 into bmax[0..nb), and whether any value is NaN: a whole
 * block in 8 vectors and one horizontal reduction (a call of row_max per block cost ~3x). */
static int block_maxima(const float *x, int64_t n, float *bmax) {
    v8i32 bad = {0};
    int64_t b = 0, j0 = 0;
    for (; j0 + 64 <= n; b++, j0 += 64) {
        v8f m;
        memcpy(&m, x + j0, sizeof m);
        bad |= (v8i32)(m != m);
        for (int q = 1; q < 8; q++) {
            v8f v;
            memcpy(&v, x + j0 + 8 * q, sizeof v);
            bad |= (v8i32)(v != v);
            m = max8(m, v);
        }
        m = max8(m, __builtin_shuffle(m, (v8i32){4, 5, 6, 7, 0, 1, 2, 3}));
        m = max8(m, __builtin_shuffle(m, (v8i32){2, 3, 0, 1, 6, 7, 4, 5}));
        m = max8(m, __builtin_shuffle(m, (v8i32){1, 0, 3, 2, 5, 4, 7, 6}));
        bmax[b] = m[0];
    }
    int nan = 0;
    for (int l = 0; l < 8; l++) nan |= bad[l];
    if (j0 < n) {
        int tail;
        bmax[b] = row_max(x + j0, n - j0, &tail);
        nan |= tail;
    }
    return nan;
}

int gpt2kit_argmax_rows(const float *x, int64_t rows, int64_t n, int64_t *out) {
    const int64_t nb = (n + 63) / 64;
    float *bmax = malloc(sizeof(float) * (size_t)nb);
    int ok = bmax != NULL;
    for (int64_t r = 0; ok && r < rows; r++) {
        const float *xr = x + r * n;
        if (block_maxima(xr, n, bmax)) {
            ok = 0;
            break;
        }
        int64_t b = 0;
        for (int64_t j = 1; j < nb; j++) b = bmax[j] > bmax[b] ? j : b; /* (the first) */
        int64_t j = 64 * b;
        while (xr[j] != bmax[b]) j++;
        out[r] = j;
    }
    free(bmax);
    return ok;
}

/* Reorders c[0..n) so that c[0..k) are its k first under scored_before (quickselect). */
static void select_first(scored *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        const int64_t mid = lo + (hi - lo) / 2;
        scored p = c[mid];
        c[mid] = c[hi];
        c[hi] = p;
        int64_t s = lo;
        for (int64_t j = lo; j < hi; j++)
            if (scored_before(c[j], p)) {
                const scored t = c[j];
                c[j] = c[s];
                c[s++] = t;
            }
        c[hi] = c[s];
        c[s] = p;
        if (s == k - 1 || s == k) return;
        if (s < k) lo = s + 1;
        else hi = s - 1;
    }
}

static int scored_cmp(const void *a, const void *b) {
    return scored_before(*(const scored *)a, *(const scored *)b) ? -1 : 1;
}

/* values / index [rows, k] = the k largest of each row of x [rows, n] (k <= n), as above.
 * Per row: the maxima of blocks of 64 bound the k-th largest from below (k blocks hold at
 * least k values >= their k-th largest maximum t), so only values >= t are candidates
 * (usually a few times k). With t = -inf (fewer than k blocks hold a finite value: the
 * logits a top-k warper already masked) the candidates are the values above -inf, and
 * the first -inf entries fill the rest. */
static int topk_row(const float *xr, int64_t n, int64_t k, float *bmax, scored *c, float *values,
                    int64_t *index) {
    const int64_t nb = (n + 63) / 64;
    if (block_maxima(xr, n, bmax)) return 0;
    float t = -INFINITY;
    if (nb > k) { /* the k-th largest block maximum */
        for (int64_t b = 0; b < nb; b++) c[b] = (scored){bmax[b], b};
        select_first(c, nb, k);
        t = c[0].v;
        for (int64_t b = 1; b < k; b++) t = c[b].v < t ? c[b].v : t;
    }
    int64_t m = 0; /* candidates: values >= t (> -inf where t is), from blocks that hold one */
    for (int64_t b = 0; b < nb; b++) {
        if (bmax[b] < t || !(bmax[b] > -INFINITY)) continue;
        const int64_t j1 = 64 * b + 64 < n ? 64 * b + 64 : n;
        for (int64_t j = 64 * b; j < j1; j++)
            if (xr[j] >= t && xr[j] > -INFINITY) c[m++] = (scored){xr[j], j};
    }
    for (int64_t j = 0; j < n && m < k; j++) /* (t = -inf: the first -inf entries) */
        if (!(xr[j] > -INFINITY)) c[m++] = (scored){xr[j], j};
    if (m > k) select_first(c, m, k);
    qsort(c, (size_t)k, sizeof(scored), scored_cmp);
    for (int64_t j = 0; j < k; j++) {
        values[j] = c[j].v;
        index[j] = c[j].i;
    }
    return 1;
}

/* Rows are shared among `nthreads` threads when there are several rows of a vocabulary's
 * size (8 x 50257 on the 2-core Xeon: ~0.36 ms on the calling thread, a sampling step's
 * largest pass after the model; the threads are still spinning from the LM head's product
 * then). */
#define SELECT_PARALLEL(rows, n) ((rows) > 1 && (rows) * (n) > (1 << 16))

int gpt2kit_topk_rows(const float *x, int64_t rows, int64_t n, int64_t k, float *values,
                      int64_t *index, int nthreads) {
    const int64_t nb = (n + 63) / 64;
    if (k <= 0 || k > n) return 0;
    int ok = 1; /* (each thread's copy starts at 1; all are and-ed into it at the end) */
    #pragma omp parallel num_threads(nthreads) if (SELECT_PARALLEL(rows, n)) reduction(&& : ok)
    {
        float *bmax = malloc(sizeof(float) * (size_t)nb);
        scored *c = malloc(sizeof(scored) * (size_t)(n > nb ? n : nb));
        ok = ok && bmax && c;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            if (ok) ok = topk_row(x + r * n, n, k, bmax, c, values + r * k, index + r * k);
        free(bmax);
        free(c);
    }
    return ok;
}
/* out[r, j] = x[r, j] < thr[r] ? fill : x[r, j] (a top-k warper's mask in one pass; NaN
 * stays, as masked_fill(x < t) leaves it). */
void gpt2kit_mask_below_rows(const float *x, int64_t rows, int64_t n, const float *thr, float fill,
                             float *out, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(nthreads) if (SELECT_PARALLEL(rows, n))
    for (int64_t r = 0; r < rows; r++) {
        const float t = thr[r];
        const float *xr = x + r * n;
        float *o = out + r * n;
        for (int64_t j = 0; j < n; j++) o[j] = xr[j] < t ? fill : xr[j];
    }
}
/* ================================ end of selection ==================================== */

/* ======================================================================================
 * Dropout (training): the mask PyTorch's CPU `bernoulli_(keep)` would draw, applied.
 * Why: `F.dropout` on CPU draws one double per element from the default generator
 * serially (~13 ns per element on the 2-core Xeon: 21 ms for an attention map of 8 x 12 x
 * 128 x 128, ~0.55 s of a 124M LoRA step's 3.8 s), then divides and multiplies in two
 * more passes. Here the same MT19937 stream is read from the generator's state, twisted
 * and tempered 624 words at a time (vectorised), and compared and applied in one pass
 * (~1.5 ns per element, single thread: the stream is sequential).
 *
 * Bit-exact with PyTorch (tests/test_native_dropout.py): element i keeps x iff the i-th
 * `random64()` (two 32-bit draws, the first the high word) masked to 53 bits, times
 * 2^-53, is below keep, i.e. iff it is below ceil(keep * 2^53); kept elements are
 * x * scale with scale = fl32(1 / fl32(keep)) (PyTorch divides the 0/1 noise by keep),
 * dropped ones x * 0 (sign and NaN as PyTorch's product). The generator state is
 * PyTorch's serialised one (`torch.get_rng_state()`: the legacy MT19937 record, words
 * stored as 64-bit), advanced in place by exactly the words consumed.
 * ====================================================================================== */
#define MT_N 624
#define MT_M 397
typedef struct {
    uint64_t seed;
    int32_t left, seeded;
    uint64_t next;
    uint64_t state[MT_N];
} mt_serialised;
/* `left - 1` tempered words remain at t[next..); PyTorch's engine keeps the same pair */
typedef struct {
    uint32_t s[MT_N], t[MT_N];
    int64_t left, next;
} mt_stream;

static inline uint32_t mt_temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}
static inline uint32_t mt_twist(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}
static void mt_refill(mt_stream *g) {
    uint32_t *s = g->s;
    for (int i = 0; i < MT_N - MT_M; i++) s[i] = s[i + MT_M] ^ mt_twist(s[i], s[i + 1]);
    /* each word reads one written 227 before it: blocks of 227 carry no dependence */
    for (int b = MT_N - MT_M; b < MT_N - 1; b += MT_N - MT_M) {
        const int e = b + (MT_N - MT_M) < MT_N - 1 ? b + (MT_N - MT_M) : MT_N - 1;
        for (int i = b; i < e; i++) s[i] = s[i + MT_M - MT_N] ^ mt_twist(s[i], s[i + 1]);
    }
    s[MT_N - 1] = s[MT_M - 1] ^ mt_twist(s[MT_N - 1], s[0]);
    for (int j = 0; j < MT_N; j++) g->t[j] = mt_temper(s[j]);
    g->next = 0;
    g->left = MT_N + 1;
}
static void mt_words(mt_stream *g, uint32_t *out, int64_t count) {
    while (count) {
        if (g->left == 1) mt_refill(g);
        const int64_t take = g->left - 1 < count ? g->left - 1 : count;
        memcpy(out, g->t + g->next, (size_t)take * sizeof *out);
        g->next += take;
        g->left -= take;
        out += take;
        count -= take;
    }
}

#define DROPOUT_CHUNK 512
/* y = x * (kept ? scale : 0), mask = kept, for n elements in order; returns 0 (nothing
 * read or written) for a state PyTorch itself would refuse. */
int gpt2kit_dropout_f32(void *rng, int64_t n, double keep, float scale, const float *x, float *y,
                        uint8_t *mask) {
    mt_serialised *pod = (mt_serialised *)rng;
    if (pod->left < 1 || pod->left > MT_N || pod->next > MT_N) return 0;
    mt_stream g;
    for (int i = 0; i < MT_N; i++) g.s[i] = (uint32_t)pod->state[i];
    g.left = pod->left;
    g.next = (int64_t)pod->next;
    for (int64_t j = g.next; j < MT_N; j++) g.t[j] = mt_temper(g.s[j]);
    const uint64_t below = (uint64_t)ceil(keep * 9007199254740992.0), low53 = (1ull << 53) - 1;
    uint32_t w[2 * DROPOUT_CHUNK];
    for (int64_t i0 = 0; i0 < n; i0 += DROPOUT_CHUNK) {
        const int64_t m = n - i0 < DROPOUT_CHUNK ? n - i0 : DROPOUT_CHUNK;
        mt_words(&g, w, 2 * m);
        for (int64_t j = 0; j < m; j++) {
            const uint64_t r = (((uint64_t)w[2 * j] << 32) | w[2 * j + 1]) & low53;
            const int kept = r < below;
            mask[i0 + j] = (uint8_t)kept;
            y[i0 + j] = x[i0 + j] * (kept ? scale : 0.0f);
        }
    }
    for (int i = 0; i < MT_N; i++) pod->state[i] = g.s[i];
    pod->left = (int32_t)g.left;
    pod->next = (uint64_t)g.next;
    return 1;
}

/* The backward: dx = dy * (kept ? scale : 0), as PyTorch's product with the noise. */
void gpt2kit_dropout_backward_f32(const float *dy, const uint8_t *mask, float scale, int64_t n,
                                  float *dx, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (n > (1 << 18))
    for (int64_t i0 = 0; i0 < n; i0 += 4096) {
        const int64_t e = n - i0 < 4096 ? n : i0 + 4096;
#pragma omp simd
        for (int64_t i = i0; i < e; i++) dx[i] = dy[i] * (mask[i] ? scale : 0.0f);
    }
}
/* =================================== end of dropout =================================== */

/* The soil-moisture LSTM (input linear + ReLU, LSTM hidden H, linear head) over long sequences,
 * in float32 throughout, for CPUs without AVX-512 VNNI or AMX: AVX2 + FMA on x86-64, NEON on
 * ARM64. One source: the vector type and the few instructions below differ per instruction set.
 *
 * Why float32: on AVX2 CPUs 16-bit integer products (vpmaddwd) run no faster than float32 FMA and
 * 8 bits do not hold trained networks. The step is mostly one (cells x 2H) x (2H x 4H) product,
 * so the kernel is a loop of FMAs with the sums of 6 cells x 16 gate rows in registers: per input,
 * 16 / VW weight vectors and 6 broadcasts feed 6 x 16 / VW FMAs.
 * Why results are reproducible: every cell's sums are its own (one accumulator per cell and gate
 * row, the inputs in a fixed order, no fused multiply-add left to the compiler), and the gates
 * divide exactly rather than by a reciprocal estimate, whose bits differ between CPU makers. A
 * cell's output does not depend on which other cells, how many threads, or which grouping shared
 * the call.
 *
 * Layout (prepared by model/engine/__init__.py): gate rows regrouped as every kernel's, [16-unit
 * block][gate i, f, g, o][unit] (network.h), so that one row block holds one gate of 16 units; w is
 * (4H / 16 row blocks, 2H inputs, 16 rows) of [W_ih | W_hh].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "network.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* Compiled for any x86-64: callers ask this before anything below runs. */
int smapx_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#pragma GCC target("avx2,fma")
typedef __m256 vf;
#define VW 8
#define PEAK_CHAINS 12  /* independent FMA chains: 2 pipes x 4 cycles of latency, and some */
static inline vf vload(const float *p) { return _mm256_loadu_ps(p); }
static inline void vstore(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vset(float x) { return _mm256_set1_ps(x); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* 2^n for integral n in [-126, 127], built from its exponent bits. */
static inline vf vpow2i(vf n)
{
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

#elif defined(__aarch64__)
#include <arm_neon.h>

int smapx_supported(void) { return 1; }  /* NEON is part of every ARM64 CPU */

typedef float32x4_t vf;
#define VW 4
#define PEAK_CHAINS 24
static inline vf vload(const float *p) { return vld1q_f32(p); }
static inline void vstore(float *p, vf v) { vst1q_f32(p, v); }
static inline vf vset(float x) { return vdupq_n_f32(x); }
static inline vf vfma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
static inline vf vmax(vf a, vf b) { return vmaxq_f32(a, b); }
static inline vf vmin(vf a, vf b) { return vminq_f32(a, b); }
static inline vf vround(vf a) { return vrndnq_f32(a); }
static inline vf vpow2i(vf n)
{
    int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
}

#else
#error "kernel_fp32.c is for x86-64 (AVX2 + FMA) and ARM64 (NEON)"
#endif

#ifndef H
#define H 256           /* hidden units: a multiple of 32 (kernels.py builds each size) */
#endif
#define G (4 * H)       /* gate rows */
#define K (2 * H)       /* gate inputs: ReLU layer output, then h */
#define ROWS 16         /* gate rows per micro-kernel */
#define RV (ROWS / VW)  /* their vectors */
#define M 6             /* cells per micro-kernel */
#define CELL_BLOCK 36   /* cells whose state lives in cache together */
#define LOG2E 1.44269504088896341f

typedef struct {
    Network net;        /* input layer, bias, head (network.h) */
    const float *w;     /* (G / ROWS, K, ROWS) */
} Weights;

/* 2^t: 2^round(t) times 2^f, f = t - round(t) in [-1/2, 1/2], by its degree-6 Taylor polynomial
 * (relative error < 2e-7); t clamped to [-126, 126], where 2^t is normal (the sigmoid of anything
 * further out is 0 or 1 within 1.2e-38). */
static inline vf exp2v(vf t)
{
    t = vmin(vmax(t, vset(-126.0f)), vset(126.0f));
    vf n = vround(t);
    vf f = t - n;
    vf p = vset(1.5403530393381608e-4f);
    p = vfma(p, f, vset(1.3333558146428443e-3f));
    p = vfma(p, f, vset(9.6181291076284772e-3f));
    p = vfma(p, f, vset(5.5504108664821580e-2f));
    p = vfma(p, f, vset(2.4022650695910071e-1f));
    p = vfma(p, f, vset(6.9314718055994531e-1f));
    p = vfma(p, f, vset(1.0f));
    return p * vpow2i(n);
}

/* The gate nonlinearities in base 2, 1 / (1 + 2^t) divided exactly. */
static inline vf sigmoidv(vf x) { return vset(1.0f) / (vset(1.0f) + exp2v(x * vset(-LOG2E))); }

static inline vf tanhv(vf x)  /* 2 sigmoid(2x) - 1 */
{
    vf s = vset(1.0f) / (vset(1.0f) + exp2v(x * vset(-2.0f * LOG2E)));
    return vfma(s, vset(2.0f), vset(-1.0f));
}

/* act[0, H) = ReLU(W1 x + b1) for one cell and day. */
static void relu_layer(const Network *net, const float *x, float *act)
{
    for (int j = 0; j < H; j += 4 * VW) {
        vf u[4];
        for (int r = 0; r < 4; r++)
            u[r] = vload(net->b1 + j + r * VW);
        for (int64_t k = 0; k < net->n_in; k++) {
            const vf xk = vset(x[k]);
            const float *row = net->w1t + k * H + j;
            for (int r = 0; r < 4; r++)
                u[r] = vfma(xk, vload(row + r * VW), u[r]);
        }
        for (int r = 0; r < 4; r++)
            vstore(act + j + r * VW, vmax(u[r], vset(0.0f)));
    }
}

/* bias + W a of ROWS gate rows (weights wb, (K, ROWS)) for M cells' inputs a[m], into pre[m]. */
static inline void gate_block(const float *wb, const float *bias, const float *const a[M],
                              float *const pre[M])
{
    vf acc[M][RV];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < RV; r++)
            acc[m][r] = vload(bias + r * VW);
#pragma GCC unroll 4
    for (int k = 0; k < K; k++) {
        vf w[RV];
#pragma GCC unroll 4
        for (int r = 0; r < RV; r++)
            w[r] = vload(wb + k * ROWS + r * VW);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            const vf v = vset(a[m][k]);
#pragma GCC unroll 4
            for (int r = 0; r < RV; r++)
                acc[m][r] = vfma(v, w[r], acc[m][r]);
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < RV; r++)
            vstore(pre[m] + r * VW, acc[m][r]);
}

/* One day for n cells: gate pre-activations of every cell, then c and h (act[H, K)) in place. */
static void lstm_step(const Weights *w, int n, float *act, float *pre, float *c)
{
    for (int rb = 0; rb < G / ROWS; rb++) {
        const float *wb = w->w + (int64_t)rb * K * ROWS;
        for (int c0 = 0; c0 < n; c0 += M) {
            const float *a[M];
            float *p[M];
            for (int m = 0; m < M; m++) {
                const int cell = c0 + m < n ? c0 + m : n - 1;  /* a short last group repeats a cell */
                a[m] = act + (int64_t)cell * K;
                p[m] = pre + (int64_t)cell * G + rb * ROWS;
            }
            gate_block(wb, w->net.bias + rb * ROWS, a, p);
        }
    }
    for (int i = 0; i < n; i++) {
        const float *g = pre + (int64_t)i * G;
        float *ci = c + (int64_t)i * H, *hi = act + (int64_t)i * K + H;
        for (int j = 0; j < H; j += VW) {
            const float *gj = g + (j / 16) * 64 + j % 16;  /* gate i of unit j; f, g, o follow */
            vf cn = sigmoidv(vload(gj + 16)) * vload(ci + j);
            cn = vfma(sigmoidv(vload(gj)), tanhv(vload(gj + 32)), cn);
            vstore(ci + j, cn);
            vstore(hi + j, sigmoidv(vload(gj + 48)) * tanhv(cn));
        }
    }
}

static float head(const Network *net, const float *h)
{
    vf s = vset(0.0f);
    for (int j = 0; j < H; j += VW)
        s = vfma(vload(net->w_head + j), vload(h + j), s);
    float lanes[VW], sum = 0.0f;
    vstore(lanes, s);
    for (int l = 0; l < VW; l++)
        sum += lanes[l];
    return sum + net->b_head;
}

/* Normalised soil moisture y (ncells, T - warmup) from normalised inputs x (ncells, T, n_in),
 * starting from zero state; the first `warmup` days only spin the state up. Returns 0, or -1
 * when out of memory. */
int smapx_lstm(const Weights *w, const float *x, int64_t ncells, int64_t T, int64_t warmup,
               float *y)
{
    const int64_t t_out = T - warmup;
    float *act = aligned_alloc(64, sizeof(float) * CELL_BLOCK * K);
    float *pre = aligned_alloc(64, sizeof(float) * CELL_BLOCK * G);
    float *c = aligned_alloc(64, sizeof(float) * CELL_BLOCK * H);
    if (!act || !pre || !c) {
        free(act), free(pre), free(c);
        return -1;
    }
    for (int64_t b0 = 0; b0 < ncells; b0 += CELL_BLOCK) {
        const int n = ncells - b0 < CELL_BLOCK ? (int)(ncells - b0) : CELL_BLOCK;
        memset(act, 0, sizeof(float) * CELL_BLOCK * K);
        memset(c, 0, sizeof(float) * CELL_BLOCK * H);
        for (int64_t t = 0; t < T; t++) {
            for (int i = 0; i < n; i++)
                relu_layer(&w->net, x + ((b0 + i) * T + t) * w->net.n_in, act + (int64_t)i * K);
            lstm_step(w, n, act, pre, c);
            if (t >= warmup)
                for (int i = 0; i < n; i++)
                    y[(b0 + i) * t_out + t - warmup] = head(&w->net, act + (int64_t)i * K + H);
        }
    }
    free(act), free(pre), free(c);
    return 0;
}

/* The sigmoid and tanh of n floats (n a multiple of VW), for tests/test_engine_math.py. */
void smapx_gates(const float *x, int64_t n, float *sigmoid, float *tanh)
{
    for (int64_t i = 0; i < n; i += VW) {
        vstore(sigmoid + i, sigmoidv(vload(x + i)));
        vstore(tanh + i, tanhv(vload(x + i)));
    }
}

#if defined(__x86_64__)
/* The core's 16-bit integer multiply-add peak (vpmaddwd + vpaddd, what an int16 kernel would run
 * on): `rounds` x PEAK_CHAINS vector pairs; returns the multiply-adds done. */
int64_t smapx_int16_peak(int64_t rounds, int32_t *sink)
{
    __m256i acc[PEAK_CHAINS];
    const __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(-2);
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm256_set1_epi32(i);
    for (int64_t r = 0; r < rounds; r++)
#pragma GCC unroll 32
        for (int i = 0; i < PEAK_CHAINS; i++)
            __asm__("vpmaddwd %2, %1, %%ymm15\n\tvpaddd %%ymm15, %0, %0"  /* not folded away */
                    : "+x"(acc[i]) : "x"(a), "x"(b) : "xmm15");
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm256_add_epi32(acc[0], acc[i]);
    _mm256_storeu_si256((__m256i *)sink, acc[0]);
    return rounds * PEAK_CHAINS * 16;
}
#endif

/* The core's float32 FMA peak, for bench/inference.py: `rounds` x PEAK_CHAINS independent vector
 * FMAs; returns the multiply-adds done (the sums are stored to `sink` so that they are computed). */
int64_t smapx_fma_peak(int64_t rounds, float *sink)
{
    vf acc[PEAK_CHAINS];
    const vf a = vset(0.999999f), b = vset(1e-7f);
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = vset((float)i);
    for (int64_t r = 0; r < rounds; r++)
#pragma GCC unroll 32
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = vfma(acc[i], a, b);
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = acc[0] + acc[i];
    vstore(sink, acc[0]);
    return rounds * PEAK_CHAINS * VW;
}

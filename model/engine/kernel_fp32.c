/* The soil-moisture LSTM (input linear + ReLU, LSTM hidden H, linear head) over long sequences,
 * in float32 throughout, for CPUs without AVX-512 VNNI or AMX: AVX2 + FMA on x86-64, NEON on
 * ARM64. One source: the vector type and the few instructions that differ per instruction set
 * are in vector.h.
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

#ifndef H
#define H 256           /* hidden units: a multiple of 32 (kernels.py builds each size) */
#endif
#if defined(__x86_64__)
/* Compiled for any x86-64: callers ask this before anything below runs. */
int smapx_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#elif defined(__aarch64__)
int smapx_supported(void) { return 1; }  /* NEON is part of every ARM64 CPU */
#else
#error "kernel_fp32.c is for x86-64 (AVX2 + FMA) and ARM64 (NEON)"
#endif
#include "vector.h"

#define G (4 * H)       /* gate rows */
#define K (2 * H)       /* gate inputs: ReLU layer output, then h */
#define ROWS 16         /* gate rows per micro-kernel */
#define RV (ROWS / VW)  /* their vectors */
#define M 6             /* cells per micro-kernel */
#define CELL_BLOCK 36   /* cells whose state lives in cache together */

typedef struct {
    Network net;        /* input layer, bias, head (network.h) */
    const float *w;     /* (G / ROWS, K, ROWS) */
} Weights;

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
    for (int i = 0; i < n; i++)
        lstm_update(pre + (int64_t)i * G, c + (int64_t)i * H, act + (int64_t)i * K + H);
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

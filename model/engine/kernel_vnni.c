/* The soil-moisture LSTM (input linear + ReLU, LSTM of H hidden units, linear head) over long
 * sequences, with the gate matrix products in integers (AVX-512 VNNI) and every state in float32.
 * Built twice: 8-bit (WIDE=0, vpdpbusd) and 16-bit (WIDE=1, vpdpwssd, for networks whose weights
 * 8 bits cannot hold within tolerance).
 *
 * Why integers: on CPUs without AMX, vpdpbusd does 64 multiply-adds per instruction where fp32 FMA
 * does 16 and the bf16 dot product 32 (at half its rate here), and the step is mostly matrix work.
 * Why it stays accurate: each gate row of [W_ih | W_hh] has its own scales, and every cell and day
 * its own activation scales (ReLU outputs in [0, max], h in [-max, max]); integer sums are exact,
 * the rest is float32.
 * Why results are reproducible: every cell is computed alone (its own scales, its own reductions in
 * a fixed order, exact integer sums), so a cell's output does not depend on which other cells, how
 * many threads, or which grouping shared the call: same inputs, same bytes.
 *
 * Layouts (prepared by model/engine/__init__.py): gate rows are regrouped as [hidden block hb of 16 units]
 * [gate i,f,g,o][unit j] so that one micro-kernel ends with the four gates of 16 units in
 * registers and applies the LSTM update there (fused gates); wq is (HB, KQ, 4, 16, 4 bytes): for
 * each group of gate inputs (4 x 8-bit or 2 x 16-bit) one 64-byte vector per gate holds 16 rows,
 * the operand of one dot-product instruction.
 */
#include "simd.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "network.h"

#ifndef WIDE
#define WIDE 0          /* 1: 16-bit integers (vpdpwssd) where 8 bits miss the tolerance */
#endif
#if WIDE
typedef int16_t act_t;
#define PER_GROUP 2     /* gate inputs per 32-bit group of a dot-product instruction */
#define U_LEVELS 4095.0f  /* activations at 12 bits; the weights take what int32 leaves (engine.py) */
#define H_LEVELS 4095.0f
#define H_ZERO 0
#define DOT "vpdpwssd"
#define DOT_INTRINSIC _mm512_dpwssd_epi32
#else
typedef uint8_t act_t;
#define PER_GROUP 4
#define U_LEVELS 255.0f
#define H_LEVELS 127.0f
#define H_ZERO 128      /* h is stored unsigned, + 128 */
#define DOT "vpdpbusd"
#define DOT_INTRINSIC _mm512_dpbusd_epi32
#endif
#define K (2 * H)       /* gate inputs: ReLU layer output, then h */
#define KQ (K / PER_GROUP)    /* groups of gate inputs */
#define KQ_U (H / PER_GROUP)  /* groups of the ReLU half */
#ifndef M
#define M 4             /* cells per micro-kernel */
#endif
#ifndef CELL_BLOCK
#define CELL_BLOCK 32   /* cells whose state lives in cache together */
#endif

typedef struct {
    Network net;            /* input layer, bias, head (network.h) */
    const int8_t *wq;       /* (HB, KQ, 4, 16, 4 bytes) */
    const float *scale_u;   /* (HB, 4, 16) dequantisation of the W_ih half */
    const float *scale_h;   /* (HB, 4, 16) of the W_hh half */
    const int32_t *offset_h;/* (HB, 4, 16) H_ZERO x row sums of the W_hh half (8-bit only) */
} Weights;

/* Compiled for any x86-64: callers ask this before anything below runs. */
int smapx_supported(void)
{
#if SMAPX_EMULATED
    return 1;
#else
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")
        && __builtin_cpu_supports("fma");
#endif
}

SMAPX_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,fma")
#include "gates.h"

/* Quantise 16 floats (already multiplied by their scale) to act_t, adding `zero`. */
static inline void store_act(act_t *dst, __m512 v, __m512i zero)
{
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), zero);
#if WIDE
    _mm256_storeu_si256((__m256i *)dst, _mm512_cvtsepi32_epi16(q));
#else
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtusepi32_epi8(q));
#endif
}

/* The ReLU layer for one cell and day, quantised into the first half of act; returns its scale. */
static float input_layer(const Weights *w, const float *x, act_t *act)
{
    __m512 u[HB];
    relu_layer(&w->net, x, u);
    __m512 top = _mm512_setzero_ps();
    for (int j = 0; j < HB; j++)
        top = _mm512_max_ps(top, u[j]);
    float mx = _mm512_reduce_max_ps(top);
    __m512 inv = _mm512_set1_ps(mx > 0.0f ? U_LEVELS / mx : 0.0f);
    for (int j = 0; j < HB; j++)
        store_act(act + 16 * j, _mm512_mul_ps(u[j], inv), _mm512_setzero_si512());
    return mx / U_LEVELS;
}

/* h of one cell quantised into the second half of act (stored + H_ZERO); returns its scale. */
static float quantise_h(const float *h, act_t *act)
{
    __m512 top = _mm512_setzero_ps();
    for (int j = 0; j < HB; j++)
        top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_loadu_ps(h + 16 * j)));
    float mx = _mm512_reduce_max_ps(top);
    __m512 inv = _mm512_set1_ps(mx > 0.0f ? H_LEVELS / mx : 0.0f);
    for (int j = 0; j < HB; j++)
        store_act(act + H + 16 * j, _mm512_mul_ps(_mm512_loadu_ps(h + 16 * j), inv),
                  _mm512_set1_epi32(H_ZERO));
    return mx / H_LEVELS;
}

/* acc += dot products of 4-byte groups (u8 x s8, or s16 x s16 when WIDE), in place: GCC 12 copies
 * the accumulator around the intrinsics' tied operand, doubling the inner loop's instructions. */
static inline __m512i dot(__m512i acc, __m512i a, __m512i w)
{
#if SMAPX_EMULATED
    return DOT_INTRINSIC(acc, a, w);
#else
    __asm__(DOT " %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
    return acc;
#endif
}

/* Integer dot products of M cells' act groups [q0, q1) with the 4 gate vectors of one block.
 * The sums live in local registers during the loop and are stored to `out` once. */
static inline void gate_sums(const int8_t *wb, const act_t *const *a, int q0, int q1,
                             __m512i out[M][4])
{
    __m512i acc[M][4];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            acc[m][g] = _mm512_setzero_si512();
    for (int q = q0; q < q1; q++) {
        const int8_t *wk = wb + q * 256;
        const __m512i w0 = _mm512_loadu_si512(wk), w1 = _mm512_loadu_si512(wk + 64);
        const __m512i w2 = _mm512_loadu_si512(wk + 128), w3 = _mm512_loadu_si512(wk + 192);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            const __m512i v = _mm512_set1_epi32(*(const int32_t *)(a[m] + PER_GROUP * q));
            acc[m][0] = dot(acc[m][0], v, w0);
            acc[m][1] = dot(acc[m][1], v, w1);
            acc[m][2] = dot(acc[m][2], v, w2);
            acc[m][3] = dot(acc[m][3], v, w3);
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            out[m][g] = acc[m][g];
}

/* One day for n cells: gates from act, then c and h updated in place (h as float32). */
static void lstm_step(const Weights *w, int n, const act_t *act, const float *su,
                      const float *sh, float *c, float *h)
{
    for (int hb = 0; hb < HB; hb++) {
        const int8_t *wb = w->wq + (int64_t)hb * KQ * 256;
        const int off = hb * 64;
        for (int c0 = 0; c0 < n; c0 += M) {
            const act_t *a[M];
            int cell[M];
            for (int m = 0; m < M; m++) {
                cell[m] = c0 + m < n ? c0 + m : n - 1;  /* a short last group repeats a cell */
                a[m] = act + (int64_t)cell[m] * K;
            }
            __m512i acc[M][4];
            __m512 pre[M][4];
            gate_sums(wb, a, 0, KQ_U, acc);
            for (int m = 0; m < M; m++)
                for (int g = 0; g < 4; g++)
                    pre[m][g] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(acc[m][g]),
                        _mm512_mul_ps(_mm512_set1_ps(su[cell[m]]), _mm512_loadu_ps(w->scale_u + off + 16 * g)),
                        _mm512_loadu_ps(w->net.bias + off + 16 * g));
            gate_sums(wb, a, KQ_U, KQ, acc);
            for (int m = 0; m < M && c0 + m < n; m++) {
                for (int g = 0; g < 4; g++) {
#if H_ZERO  /* h is stored + H_ZERO: take H_ZERO x the row sums back off */
                    acc[m][g] = _mm512_sub_epi32(acc[m][g], _mm512_loadu_si512(w->offset_h + off + 16 * g));
#endif
                    pre[m][g] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(acc[m][g]),
                        _mm512_mul_ps(_mm512_set1_ps(sh[cell[m]]), _mm512_loadu_ps(w->scale_h + off + 16 * g)),
                        pre[m][g]);
                }
                const int64_t at = (int64_t)cell[m] * H + 16 * hb;
                lstm_update(pre[m][0], pre[m][1], pre[m][2], pre[m][3], c + at, h + at);
            }
        }
    }
}

/* Normalised soil moisture y (ncells, T - warmup) from normalised inputs x (ncells, T, n_in),
 * starting from zero state; the first `warmup` days only spin the state up. Returns 0, or -1
 * when out of memory. */
int smapx_lstm(const Weights *w, const float *x, int64_t ncells, int64_t T, int64_t warmup,
               float *y)
{
    const int64_t t_out = T - warmup;
    act_t *act = aligned_alloc(64, sizeof(act_t) * CELL_BLOCK * K);
    float *c = aligned_alloc(64, sizeof(float) * CELL_BLOCK * H);
    float *h = aligned_alloc(64, sizeof(float) * CELL_BLOCK * H);
    if (!act || !c || !h) {
        free(act), free(c), free(h);
        return -1;
    }
    float su[CELL_BLOCK], sh[CELL_BLOCK];
    for (int64_t b0 = 0; b0 < ncells; b0 += CELL_BLOCK) {
        const int n = ncells - b0 < CELL_BLOCK ? (int)(ncells - b0) : CELL_BLOCK;
        memset(c, 0, sizeof(float) * CELL_BLOCK * H);
        memset(h, 0, sizeof(float) * CELL_BLOCK * H);
        for (int64_t t = 0; t < T; t++) {
            for (int i = 0; i < n; i++) {
                su[i] = input_layer(w, x + ((b0 + i) * T + t) * w->net.n_in, act + (int64_t)i * K);
                sh[i] = quantise_h(h + (int64_t)i * H, act + (int64_t)i * K);
            }
            lstm_step(w, n, act, su, sh, c, h);
            if (t >= warmup)
                for (int i = 0; i < n; i++)
                    y[(b0 + i) * t_out + t - warmup] = head(&w->net, h + (int64_t)i * H);
        }
    }
    free(act), free(c), free(h);
    return 0;
}

/* The soil-moisture LSTM (input linear + ReLU, LSTM of H hidden units, linear head) over long
 * sequences, with the gate matrix products on AMX int8 tiles and every state in float32. Built twice:
 * 8-bit (SPLIT=0) and 16-bit (SPLIT=1, for networks whose weights 8 bits cannot hold).
 *
 * Why: one AMX int8 tile product does 16x the multiply-adds of an AVX-512 VNNI instruction, and
 * the step is mostly matrix work. For 16 bits, each integer is split as a = 256 * hi + lo with
 * both halves in [-128, 127], and the gate sums take hi*hi (x 65536) and hi*lo + lo*hi (x 256) in
 * int32; the dropped lo*lo is below 2^-15 of a full-scale product, and centred halves keep it free
 * of bias. Trained networks need ~15-bit weights: their rounding dominates the error at 8 bits.
 * Activations get per-cell, per-day scales (8 bits: ReLU output 0..255, h -127..127; 16 bits:
 * +-32639), weights per-row scales, as in the VNNI kernel (kernel_vnni.c).
 * Why results are reproducible: a tile row is one cell, each output element sums only its own row
 * in exact integers, and its scales are its own; row blocks without cells are skipped. A cell's
 * bytes do not depend on which other cells, how many threads, or which grouping shared the call.
 *
 * Layouts (prepared by model/engine/__init__.py): act is (half, part, CELLS, H) bytes, half 0 the
 * ReLU output and half 1 h, part hi then lo (16-bit only); wq is (HB, gate, half, KS, part, 16 groups of
 * 4 inputs, 16 units, 4) bytes: each (unit block, gate, half, k-step, part) one 1 KiB B tile in
 * AMX's group-interleaved layout.
 */
#include "simd.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "network.h"
#include "amx.h"

#ifndef SPLIT
#define SPLIT 0
#endif
#if SPLIT
#define PARTS 2         /* hi, lo; C tiles: hi*hi and mixed sums of 2 row blocks at a time */
#define U_LEVELS 32639.0f  /* 256 * 127 + 127 */
#define H_LEVELS 32639.0f
#else
#define PARTS 1         /* C tiles: the sums of 4 row blocks */
#define U_LEVELS 255.0f    /* the ReLU output is unsigned */
#define H_LEVELS 127.0f
#endif
#define ROW_BLOCKS 4    /* of 16 cells: each weight tile load serves 64 cells */
#define KH H            /* inputs per half (ReLU output, then h) */
#define KS (KH / 64)    /* k-steps of 64 int8 inputs (one 64-byte tile row) per half */
#define CELLS (16 * ROW_BLOCKS)
#define TILE 1024       /* bytes of one tile */

typedef struct {
    Network net;            /* input layer, bias, head (network.h) */
    const int8_t *wq;       /* (HB, 4, 2, KS, PARTS, 16, 16, 4) weight tiles */
    const float *scale;     /* (HB, 4, 2, 16) dequantisation of each row's half */
} Weights;

/* Compiled for any x86-64: callers ask this before anything below runs. */
int smapx_supported(void)
{
#if SMAPX_EMULATED
    return 1;
#else
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
          && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8")
          && __builtin_cpu_supports("fma")))
        return 0;
    return tiles_permitted();
#endif
}

SMAPX_TARGET("avx512f,avx512bw,avx512vl,fma,amx-tile,amx-int8")
#include "gates.h"

/* tmm0-3: int32 sums (16 cells x 16 units); tmm4/5: activations of one row block and k-step
 * (hi, lo); tmm6/7: weights (hi, lo). Every tile is 16 rows x 64 bytes. */

#define ACT(half, part) (act + ((half) * PARTS + (part)) * CELLS * KH)

/* 16 values v (already at integer scale) stored as their integer bytes. */
static inline void store_bytes(__m512 v, float levels, int8_t *hi, int8_t *lo)
{
    __m512i a = _mm512_cvtps_epi32(v);  /* the largest may round one past the levels */
    a = _mm512_min_epi32(_mm512_max_epi32(a, _mm512_set1_epi32(-(int)levels)),
                         _mm512_set1_epi32((int)levels));
#if SPLIT
    __m512i h = _mm512_srai_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(128)), 8);
    _mm_storeu_si128((__m128i *)hi, _mm512_cvtepi32_epi8(h));
    _mm_storeu_si128((__m128i *)lo, _mm512_cvtepi32_epi8(_mm512_sub_epi32(a, _mm512_slli_epi32(h, 8))));
#else
    (void)lo;
    _mm_storeu_si128((__m128i *)hi, _mm512_cvtepi32_epi8(a));  /* 0..255 as u8 for the ReLU half */
#endif
}

/* One half's H values quantised against their largest magnitude; returns the scale. */
static float quantise_half(const __m512 v[HB], float levels, int8_t *hi, int8_t *lo)
{
    __m512 top = _mm512_setzero_ps();
    for (int j = 0; j < HB; j++)
        top = _mm512_max_ps(top, _mm512_abs_ps(v[j]));
    float mx = _mm512_reduce_max_ps(top);
    __m512 inv = _mm512_set1_ps(mx > 0.0f ? levels / mx : 0.0f);
    for (int j = 0; j < HB; j++)
        store_bytes(_mm512_mul_ps(v[j], inv), levels, hi + 16 * j, lo + 16 * j);
    return mx / levels;
}

/* The day's gate inputs of cell m, its ReLU layer output and its h, as bytes, and their scales. */
static void gate_inputs(const Weights *w, const float *x, const float *h, int m, int8_t *act,
                        float *su, float *sh)
{
    __m512 v[HB];
    relu_layer(&w->net, x, v);
    *su = quantise_half(v, U_LEVELS, ACT(0, 0) + m * KH, ACT(0, PARTS - 1) + m * KH);
    for (int j = 0; j < HB; j++)
        v[j] = _mm512_loadu_ps(h + 16 * j);
    *sh = quantise_half(v, H_LEVELS, ACT(1, 0) + m * KH, ACT(1, PARTS - 1) + m * KH);
}

/* Row block r's sums at k-step ks with weight tiles 6 (and 7); tile numbers are literals, as the
 * instructions encode them. The 8-bit ReLU half is unsigned (dpbusd), everything else signed. */
#if SPLIT
#define ROW_SUMS(r, hh, mix)                                                        \
    do {                                                                            \
        if (16 * (r) < n) {                                                         \
            _tile_loadd(4, a + (r) * 16 * KH + 64 * ks, KH);                        \
            _tile_loadd(5, a + CELLS * KH + (r) * 16 * KH + 64 * ks, KH);           \
            _tile_dpbssd(hh, 4, 6);                                                 \
            _tile_dpbssd(mix, 4, 7);                                                \
            _tile_dpbssd(mix, 5, 6);                                                \
        }                                                                           \
    } while (0)
#else
#define ROW_SUMS(r, t)                                                              \
    do {                                                                            \
        if (16 * (r) < n) {                                                         \
            _tile_loadd(4, a + (r) * 16 * KH + 64 * ks, KH);                        \
            if (relu_half)                                                          \
                _tile_dpbusd(t, 4, 6);                                              \
            else                                                                    \
                _tile_dpbssd(t, 4, 6);                                              \
        }                                                                           \
    } while (0)
#endif

/* One half's integer sums for one gate of 16 units and all cells, into sums: (row block, hi*hi |
 * mixed) tiles for 16 bits, row block tiles for 8. The 16-bit pass takes two row blocks at a time
 * and the second pair finds the weight tiles in L1. */
static void half_sums(const int8_t *wt, int n, const int8_t *a, int relu_half,
                      int32_t sums[4 * PARTS][16][16])
{
    (void)relu_half;
#if SPLIT
    for (int pair = 0; pair < 2 && 32 * pair < n; pair++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int ks = 0; ks < KS; ks++) {
            _tile_loadd(6, wt + ks * PARTS * TILE, 64);
            _tile_loadd(7, wt + ks * PARTS * TILE + TILE, 64);
            ROW_SUMS(2 * pair, 0, 1);
            ROW_SUMS(2 * pair + 1, 2, 3);
        }
        _tile_stored(0, sums[4 * pair], 64);
        _tile_stored(1, sums[4 * pair + 1], 64);
        _tile_stored(2, sums[4 * pair + 2], 64);
        _tile_stored(3, sums[4 * pair + 3], 64);
    }
#else
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int ks = 0; ks < KS; ks++) {
        _tile_loadd(6, wt + ks * TILE, 64);
        ROW_SUMS(0, 0);
        ROW_SUMS(1, 1);
        ROW_SUMS(2, 2);
        ROW_SUMS(3, 3);
    }
    _tile_stored(0, sums[0], 64);
    _tile_stored(1, sums[1], 64);
    _tile_stored(2, sums[2], 64);
    _tile_stored(3, sums[3], 64);
#endif
}

/* The integer sums of cell m as float32, in units of the row scale. */
static inline __m512 sums_at(int32_t sums[4 * PARTS][16][16], int m)
{
#if SPLIT
    const int r = m / 16, i = m % 16;
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[2 * r][i])),
                           _mm512_set1_ps(256.0f),
                           _mm512_cvtepi32_ps(_mm512_load_si512(sums[2 * r + 1][i])));
#else
    return _mm512_cvtepi32_ps(_mm512_load_si512(sums[m / 16][m % 16]));
#endif
}

/* pre[m] = bias + both halves' sums x (cell scale x row scales), for the n cells. */
static void gate_preactivations(int32_t sums[2][4 * PARTS][16][16], int n, const float *su,
                                const float *sh, const float *row_scale, const float *bias,
                                float pre[CELLS][16])
{
    const __m512 ru = _mm512_loadu_ps(row_scale), rh = _mm512_loadu_ps(row_scale + 16);
    const __m512 b = _mm512_loadu_ps(bias);
    for (int m = 0; m < n; m++) {
        __m512 p = _mm512_fmadd_ps(sums_at(sums[0], m), _mm512_mul_ps(ru, _mm512_set1_ps(su[m])), b);
        _mm512_store_ps(pre[m], _mm512_fmadd_ps(sums_at(sums[1], m),
                                                _mm512_mul_ps(rh, _mm512_set1_ps(sh[m])), p));
    }
}

/* One day for n cells: gate sums on the tiles per unit block, then c and h updated in place. */
static void lstm_step(const Weights *w, int n, const int8_t *act, const float *su,
                      const float *sh, float *c, float *h)
{
    float pre[4][CELLS][16] __attribute__((aligned(64)));
    int32_t sums[2][4 * PARTS][16][16] __attribute__((aligned(64)));
    for (int hb = 0; hb < HB; hb++) {
        for (int g = 0; g < 4; g++) {
            const int64_t row = (int64_t)hb * 4 + g;
            for (int half = 0; half < 2; half++)
                half_sums(w->wq + (row * 2 + half) * KS * PARTS * TILE, n, ACT(half, 0), half == 0,
                          sums[half]);
            gate_preactivations(sums, n, su, sh, w->scale + row * 32, w->net.bias + row * 16, pre[g]);
        }
#pragma GCC unroll 4
        for (int m = 0; m < n; m++)
            lstm_update(_mm512_load_ps(pre[0][m]), _mm512_load_ps(pre[1][m]), _mm512_load_ps(pre[2][m]),
                        _mm512_load_ps(pre[3][m]), c + m * H + 16 * hb, h + m * H + 16 * hb);
    }
}

/* Normalised soil moisture y (ncells, T - warmup) from normalised inputs x (ncells, T, n_in),
 * starting from zero state; the first `warmup` days only spin the state up. Returns 0, or -1
 * when out of memory. */
int smapx_lstm(const Weights *w, const float *x, int64_t ncells, int64_t T, int64_t warmup,
               float *y)
{
    const int64_t t_out = T - warmup;
    const size_t act_bytes = 2 * PARTS * CELLS * KH;
    int8_t *act = aligned_alloc(64, act_bytes);
    float *c = aligned_alloc(64, sizeof(float) * CELLS * H);
    float *h = aligned_alloc(64, sizeof(float) * CELLS * H);
    if (!act || !c || !h) {
        free(act), free(c), free(h);
        return -1;
    }
    float su[CELLS], sh[CELLS];
    configure_tiles();
    for (int64_t b0 = 0; b0 < ncells; b0 += CELLS) {
        const int n = ncells - b0 < CELLS ? (int)(ncells - b0) : CELLS;
        memset(act, 0, act_bytes);  /* rows past n stay zero */
        memset(c, 0, sizeof(float) * CELLS * H);
        memset(h, 0, sizeof(float) * CELLS * H);
        for (int64_t t = 0; t < T; t++) {
            for (int m = 0; m < n; m++)
                gate_inputs(w, x + ((b0 + m) * T + t) * w->net.n_in, h + m * H, m, act, su + m, sh + m);
            lstm_step(w, n, act, su, sh, c, h);
            if (t >= warmup)
                for (int m = 0; m < n; m++)
                    y[(b0 + m) * t_out + t - warmup] = head(&w->net, h + m * H);
        }
    }
    _tile_release();
    free(act), free(c), free(h);
    return 0;
}

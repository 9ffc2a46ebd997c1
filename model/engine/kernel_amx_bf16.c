/* The soil-moisture LSTM (input linear + ReLU, LSTM of H hidden units, linear head) over long
 * sequences, with the gate matrix products on AMX tiles in "bf16x3" and every state in float32.
 *
 * Why: AMX multiplies bf16 tiles at 16x the rate of float32 FMA, but one bf16 product rounds each
 * weight and activation to 8 bits of mantissa, which trained networks cannot take (weight rounding
 * dominates their error). Each operand is split as hi + lo, both bf16 (hi = bf16(v),
 * lo = bf16(v - hi)), and the gate sums take hi*hi + hi*lo + lo*hi in float32: about 16 bits of
 * each operand, within ~1e-5 of the float32 network, at still several times its speed.
 * Why results are reproducible: a tile row is one cell and each output element sums only its own
 * row, in a fixed order; padded rows are zeros. A cell's bytes do not depend on which other cells,
 * how many threads, or which grouping shared the call.
 *
 * Layouts (prepared by model/engine/__init__.py): act_hi/act_lo are (chunk, 64 cells, 2H / CHUNKS)
 * bf16, the ReLU layer output then h; wb is (HB, KS, gate, hi|lo, 16 pairs of inputs, 16 units, 2) bf16, so that each
 * (unit block, k-step, gate, part) is one 1 KiB B tile in AMX's pair-interleaved layout.
 */
#include "simd.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "network.h"
#include "amx.h"

#define K (2 * H)       /* gate inputs: ReLU layer output, then h */
#define KS (K / 32)     /* k-steps of 32 bf16 inputs (one 64-byte tile row) */
#define CELLS 64        /* cells per pass: 4 row blocks of 16, one C tile each */
#define CHUNKS 4        /* chunks of inputs: one chunk's activations (CELLS x 128 x hi/lo) is 32 KiB */
#define CHUNK (K / CHUNKS)
#define CHUNK_STEPS (CHUNK / 32)

typedef struct {
    Network net;            /* input layer, bias, head (network.h) */
    const uint16_t *wb;     /* (HB, KS, 4, 2, 16, 16, 2) bf16 tiles of [W_ih | W_hh] */
} Weights;

/* Compiled for any x86-64: callers ask this before anything below runs. */
int smapx_supported(void)
{
#if SMAPX_EMULATED
    return 1;
#else
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
          && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("amx-tile")
          && __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("fma")))
        return 0;
    return tiles_permitted();
#endif
}

SMAPX_TARGET("avx512f,avx512bw,avx512vl,avx512bf16,fma,amx-tile,amx-bf16")
#include "gates.h"

/* tmm0-3: gate sums i, f, g, o of 16 cells x 16 units (float32); tmm4/5: activations hi/lo of
 * one k-step; tmm6/7: weights hi/lo of one gate and k-step. Every tile is 16 rows x 64 bytes. */

/* 16 floats as bf16 hi + lo parts (each rounded to nearest even). */
static inline void split(__m512 v, uint16_t *hi, uint16_t *lo)
{
    __m256bh h = _mm512_cvtneps_pbh(v);
    __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
    _mm256_storeu_si256((__m256i *)hi, (__m256i)h);
    _mm256_storeu_si256((__m256i *)lo, (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, back)));
}

/* C tile r += the bf16x3 product of row block r's activations (k-step j of the chunk) and
 * weight tiles 6/7; row blocks without cells are skipped (their sums stay zero). */
#define ROW_SUMS(r)                                                         \
    do {                                                                    \
        if (16 * (r) < n) {                                                 \
            _tile_loadd(4, a_hi + (r) * 16 * CHUNK + 32 * j, 2 * CHUNK);    \
            _tile_loadd(5, a_lo + (r) * 16 * CHUNK + 32 * j, 2 * CHUNK);    \
            _tile_dpbf16ps(r, 4, 6);                                        \
            _tile_dpbf16ps(r, 4, 7);                                        \
            _tile_dpbf16ps(r, 5, 6);                                        \
        }                                                                   \
    } while (0)

/* Adds one k-chunk's part of one gate's sums for 16 units and all cells to sums (4 row blocks of
 * 16 cells x 16 units), starting from zero on the first chunk. */
static void chunk_sums(const uint16_t *wg, int n, const uint16_t *a_hi, const uint16_t *a_lo,
                       float *sums, int first)
{
    if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, sums, 64);
        _tile_loadd(1, sums + 256, 64);
        _tile_loadd(2, sums + 512, 64);
        _tile_loadd(3, sums + 768, 64);
    }
    for (int j = 0; j < CHUNK_STEPS; j++) {
        _tile_loadd(6, wg + j * 4 * 1024, 64);
        _tile_loadd(7, wg + j * 4 * 1024 + 512, 64);
        ROW_SUMS(0);
        ROW_SUMS(1);
        ROW_SUMS(2);
        ROW_SUMS(3);
    }
    _tile_stored(0, sums, 64);
    _tile_stored(1, sums + 256, 64);
    _tile_stored(2, sums + 512, 64);
    _tile_stored(3, sums + 768, 64);
}

/* One day for n cells: gate sums on the tiles, chunk by chunk of inputs so that a chunk's
 * activations stay in L1 while every weight tile passes them; then c and h updated in place. */
static void lstm_step(const Weights *w, int n, const uint16_t *act_hi, const uint16_t *act_lo,
                      float *pre, float *c, float *h)
{
    for (int kc = 0; kc < CHUNKS; kc++)
        for (int hb = 0; hb < HB; hb++)
            for (int g = 0; g < 4; g++)
                chunk_sums(w->wb + (((int64_t)hb * KS + kc * CHUNK_STEPS) * 4 + g) * 1024, n,
                           act_hi + kc * CELLS * CHUNK, act_lo + kc * CELLS * CHUNK,
                           pre + (hb * 4 + g) * CELLS * 16, kc == 0);
    for (int hb = 0; hb < HB; hb++) {
        const float *b = w->net.bias + hb * 64, *p = pre + hb * 4 * CELLS * 16;
        for (int m = 0; m < n; m++) {
            __m512 gi = _mm512_add_ps(_mm512_load_ps(p + 16 * m), _mm512_loadu_ps(b));
            __m512 gf = _mm512_add_ps(_mm512_load_ps(p + 16 * (CELLS + m)), _mm512_loadu_ps(b + 16));
            __m512 gg = _mm512_add_ps(_mm512_load_ps(p + 16 * (2 * CELLS + m)), _mm512_loadu_ps(b + 32));
            __m512 go = _mm512_add_ps(_mm512_load_ps(p + 16 * (3 * CELLS + m)), _mm512_loadu_ps(b + 48));
            lstm_update(gi, gf, gg, go, c + m * H + 16 * hb, h + m * H + 16 * hb);
        }
    }
}

/* The day's gate inputs of cell m: its ReLU layer output and its h, split into bf16 hi + lo and
 * written to the activations' (chunk, cell, input) layout. */
static void gate_inputs(const Weights *w, const float *x, const float *h, int m, uint16_t *hi,
                        uint16_t *lo)
{
    __m512 u[HB];
    relu_layer(&w->net, x, u);
    for (int j = 0; j < 2 * HB; j++) {
        int k = 16 * j;
        int64_t at = (int64_t)(k / CHUNK) * CELLS * CHUNK + m * CHUNK + k % CHUNK;
        split(j < HB ? u[j] : _mm512_loadu_ps(h + k - H), hi + at, lo + at);
    }
}

/* Normalised soil moisture y (ncells, T - warmup) from normalised inputs x (ncells, T, n_in),
 * starting from zero state; the first `warmup` days only spin the state up. Returns 0, or -1
 * when out of memory. */
int smapx_lstm(const Weights *w, const float *x, int64_t ncells, int64_t T, int64_t warmup,
               float *y)
{
    const int64_t t_out = T - warmup;
    uint16_t *act_hi = aligned_alloc(64, sizeof(uint16_t) * CELLS * K);
    uint16_t *act_lo = aligned_alloc(64, sizeof(uint16_t) * CELLS * K);
    float *c = aligned_alloc(64, sizeof(float) * CELLS * H);
    float *h = aligned_alloc(64, sizeof(float) * CELLS * H);
    float *pre = aligned_alloc(64, sizeof(float) * CELLS * 4 * H);  /* (hb, gate, cell, 16) */
    if (!act_hi || !act_lo || !c || !h || !pre) {
        free(act_hi), free(act_lo), free(c), free(h), free(pre);
        return -1;
    }
    configure_tiles();
    for (int64_t b0 = 0; b0 < ncells; b0 += CELLS) {
        const int n = ncells - b0 < CELLS ? (int)(ncells - b0) : CELLS;
        memset(act_hi, 0, sizeof(uint16_t) * CELLS * K);  /* rows past n stay zero */
        memset(act_lo, 0, sizeof(uint16_t) * CELLS * K);
        memset(c, 0, sizeof(float) * CELLS * H);
        memset(h, 0, sizeof(float) * CELLS * H);
        for (int64_t t = 0; t < T; t++) {
            for (int m = 0; m < n; m++)
                gate_inputs(w, x + ((b0 + m) * T + t) * w->net.n_in, h + m * H, m, act_hi, act_lo);
            lstm_step(w, n, act_hi, act_lo, pre, c, h);
            if (t >= warmup)
                for (int m = 0; m < n; m++)
                    y[(b0 + m) * t_out + t - warmup] = head(&w->net, h + m * H);
        }
    }
    _tile_release();
    free(act_hi), free(act_lo), free(c), free(h), free(pre);
    return 0;
}

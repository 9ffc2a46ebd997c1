/* The soil-moisture LSTM (input linear + ReLU, LSTM hidden 256, linear head) over long sequences,
 * with the gate matrix products on AMX int8 tiles carrying 16-bit integers, and every state in
 * float32.
 *
 * Why: AMX multiplies int8 tiles at 16x the multiply-adds of AVX-512 VNNI per instruction, but
 * trained networks need ~15-bit weights (their rounding dominates the error at 8 bits). Each
 * 16-bit integer is split as 256 * hi + lo (hi signed, lo unsigned for activations and signed for
 * weights), and the gate sums take hi*hi (x 65536) and hi*lo + lo*hi (x 256) in int32; the
 * dropped lo*lo is below 2^-15 of a full-scale product. Activations get per-cell, per-day scales
 * (15 bits for the ReLU output, 16 with sign for h), weights per-row scales, as in the VNNI kernel.
 * Why results are reproducible: a tile row is one cell, each output element sums only its own row
 * in exact integers, and its scales are its own; row blocks without cells are skipped. A cell's
 * bytes do not depend on which other cells, how many threads, or which grouping shared the call.
 *
 * Layouts (prepared by model/engine.py): act is (half, part hi|lo, CELLS, 256) bytes for the ReLU
 * output (half 0) and h (half 1); wq is (HB, gate, half, KS, part hi|lo, 16 groups of 4 inputs,
 * 16 units, 4) bytes: each (unit block, gate, half, k-step, part) one 1 KiB B tile in AMX's
 * group-interleaved layout.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KH 256          /* inputs per half (ReLU output, then h) */
#define KS (KH / 64)    /* k-steps of 64 int8 inputs (one 64-byte tile row) per half */
#define CELLS 32        /* cells per pass: 2 row blocks of 16 */
#define LEVELS 32639.0f /* activation levels: |a| <= 32639 = 256 * 127 + 127 */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    int64_t n_in;
    const float *w1t;       /* (n_in, H) input layer, transposed */
    const float *b1;        /* (H) */
    const int8_t *wq;       /* (HB, 4, 2, KS, 2, 16, 16, 4) weight tiles */
    const float *scale;     /* (HB, 4, 2, 16) dequantisation of each row's half */
    const float *bias;      /* (HB, 4, 16) b_ih + b_hh */
    const float *w_head;    /* (H) */
    float b_head;
} Weights;

/* Compiled for any x86-64: callers ask this before anything below runs. Linux hands out the
 * tile registers' state only on request, once per process. */
int smapx_supported(void)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
          && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8")
          && __builtin_cpu_supports("fma")))
        return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

#pragma GCC target("avx512f,avx512bw,avx512vl,fma,amx-tile,amx-int8")
#include "engine_math.h"

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

/* tmm0/1: hi*hi and mixed sums of row block 0 (16 cells x 16 units, int32), tmm2/3: of row block
 * 1; tmm4/5: activations hi/lo of one row block and k-step; tmm6/7: weights hi/lo. */
static void configure_tiles(void)
{
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++)
        cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
}

/* 16 values as integers a at scale 1/inv, split as a = 256 * hi + lo with both in [-128, 127]:
 * a centred lo keeps the dropped lo*lo term free of bias. */
static inline void quantise(__m512 v, __m512 inv, int8_t *hi, int8_t *lo)
{
    __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));  /* the largest may round past */
    a = _mm512_min_epi32(_mm512_max_epi32(a, _mm512_set1_epi32(-32639)), _mm512_set1_epi32(32639));
    __m512i h = _mm512_srai_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(128)), 8);
    _mm_storeu_si128((__m128i *)hi, _mm512_cvtepi32_epi8(h));
    _mm_storeu_si128((__m128i *)lo, _mm512_cvtepi32_epi8(_mm512_sub_epi32(a, _mm512_slli_epi32(h, 8))));
}

/* 16 floats of v quantised against the largest |v|: the scale is returned. */
static float quantise_half(const __m512 v[HB], int8_t *hi, int8_t *lo)
{
    __m512 top = _mm512_setzero_ps();
    for (int j = 0; j < HB; j++)
        top = _mm512_max_ps(top, _mm512_abs_ps(v[j]));
    float mx = _mm512_reduce_max_ps(top);
    __m512 inv = _mm512_set1_ps(mx > 0.0f ? LEVELS / mx : 0.0f);
    for (int j = 0; j < HB; j++)
        quantise(v[j], inv, hi + 16 * j, lo + 16 * j);
    return mx / LEVELS;
}

#define ACT(half, part) (act + ((half) * 2 + (part)) * CELLS * KH)

/* The day's gate inputs of cell m: its ReLU layer output and its h as hi/lo bytes, and the scale
 * of each half. */
static void gate_inputs(const Weights *w, const float *x, const float *h, int m, int8_t *act,
                        float *su, float *sh)
{
    __m512 v[HB];
    relu_layer(w->n_in, w->w1t, w->b1, x, v);
    *su = quantise_half(v, ACT(0, 0) + m * KH, ACT(0, 1) + m * KH);
    for (int j = 0; j < HB; j++)
        v[j] = _mm512_loadu_ps(h + 16 * j);
    *sh = quantise_half(v, ACT(1, 0) + m * KH, ACT(1, 1) + m * KH);
}

/* Tiles hh and mix += hi*hi and hi*lo + lo*hi of row block r at k-step ks with weight tiles
 * 6/7 (tile numbers are literals: the instructions encode them). */
#define ROW_SUMS(r, hh, mix)                                                        \
    do {                                                                            \
        if (16 * (r) < n) {                                                         \
            _tile_loadd(4, a_hi + (r) * 16 * KH + 64 * ks, KH);                     \
            _tile_loadd(5, a_lo + (r) * 16 * KH + 64 * ks, KH);                     \
            _tile_dpbssd(hh, 4, 6);                                                 \
            _tile_dpbssd(mix, 4, 7);                                                \
            _tile_dpbssd(mix, 5, 6);                                                \
        }                                                                           \
    } while (0)

/* One half's integer sums for one gate of 16 units and all cells, into sums (4 tiles). */
static void half_sums(const int8_t *wt, int n, const int8_t *a_hi, const int8_t *a_lo,
                      int32_t sums[4][16][16])
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int ks = 0; ks < KS; ks++) {
        _tile_loadd(6, wt + ks * 2048, 64);
        _tile_loadd(7, wt + ks * 2048 + 1024, 64);
        ROW_SUMS(0, 0, 1);
        ROW_SUMS(1, 2, 3);
    }
    _tile_stored(0, sums[0], 64);
    _tile_stored(1, sums[1], 64);
    _tile_stored(2, sums[2], 64);
    _tile_stored(3, sums[3], 64);
}

/* pre[m] (+)= (65536 * hi*hi + 256 * mixed) * (cell scale x row scales) for the n cells; the
 * first half starts from the bias. */
static void add_half(int32_t sums[4][16][16], int n, const float *cell_scale,
                     const float *row_scale, const float *bias, int first, float pre[CELLS][16])
{
    const __m512 hh = _mm512_mul_ps(_mm512_loadu_ps(row_scale), _mm512_set1_ps(65536.0f));
    const __m512 mix = _mm512_mul_ps(_mm512_loadu_ps(row_scale), _mm512_set1_ps(256.0f));
    const __m512 start = _mm512_loadu_ps(bias);
    for (int m = 0; m < n; m++) {
        const int r = m / 16, i = m % 16;
        const __m512 cs = _mm512_set1_ps(cell_scale[m]);
        __m512 p = first ? start : _mm512_load_ps(pre[m]);
        p = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[2 * r][i])), _mm512_mul_ps(hh, cs), p);
        p = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[2 * r + 1][i])), _mm512_mul_ps(mix, cs), p);
        _mm512_store_ps(pre[m], p);
    }
}

/* c and h of the n cells updated in place for unit block hb from its gate pre-activations. */
static void update_state(int n, int hb, float pre[4][CELLS][16], float *c, float *h)
{
    for (int m = 0; m < n; m++) {
        float *cm = c + m * H + 16 * hb, *hm = h + m * H + 16 * hb;
        __m512 cn = _mm512_fmadd_ps(sigmoid512(_mm512_load_ps(pre[1][m])), _mm512_loadu_ps(cm),
                                    _mm512_mul_ps(sigmoid512(_mm512_load_ps(pre[0][m])),
                                                  tanh512(_mm512_load_ps(pre[2][m]))));
        _mm512_storeu_ps(cm, cn);
        _mm512_storeu_ps(hm, _mm512_mul_ps(sigmoid512(_mm512_load_ps(pre[3][m])), tanh512(cn)));
    }
}

#define JOBS (HB * 4 * 2)  /* (unit block, gate, half), in the order of the weight tiles */

/* One day for n cells. Software-pipelined: the tile sums of job j + 1 are issued before the
 * vector work that consumes job j (and the state update of a finished unit block), so the AMX
 * unit and the AVX-512 units work at the same time. */
static void lstm_step(const Weights *w, int n, const int8_t *act, const float *su,
                      const float *sh, float *c, float *h)
{
    float pre[4][CELLS][16] __attribute__((aligned(64)));
    int32_t sums[2][4][16][16] __attribute__((aligned(64)));
    half_sums(w->wq, n, ACT(0, 0), ACT(0, 1), sums[0]);
    for (int j = 0; j < JOBS; j++) {
        if (j + 1 < JOBS) {
            const int next = (j + 1) % 2;
            half_sums(w->wq + (int64_t)(j + 1) * KS * 2048, n, ACT(next, 0), ACT(next, 1),
                      sums[(j + 1) % 2]);
        }
        const int half = j % 2, g = (j / 2) % 4, hb = j / 8;
        add_half(sums[j % 2], n, half ? sh : su, w->scale + j * 16, w->bias + (hb * 4 + g) * 16,
                 half == 0, pre[g]);
        if (j % 8 == 7)
            update_state(n, hb, pre, c, h);
    }
}

/* Normalised soil moisture y (ncells, T - warmup) from normalised inputs x (ncells, T, n_in),
 * starting from zero state; the first `warmup` days only spin the state up. Returns 0, or -1
 * when out of memory. */
int smapx_lstm(const Weights *w, const float *x, int64_t ncells, int64_t T, int64_t warmup,
               float *y)
{
    const int64_t t_out = T - warmup;
    int8_t *act = aligned_alloc(64, 4 * CELLS * KH);
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
        memset(act, 0, 4 * CELLS * KH);  /* rows past n stay zero */
        memset(c, 0, sizeof(float) * CELLS * H);
        memset(h, 0, sizeof(float) * CELLS * H);
        for (int64_t t = 0; t < T; t++) {
            for (int m = 0; m < n; m++)
                gate_inputs(w, x + ((b0 + m) * T + t) * w->n_in, h + m * H, m, act, su + m, sh + m);
            lstm_step(w, n, act, su, sh, c, h);
            if (t >= warmup)
                for (int m = 0; m < n; m++)
                    y[(b0 + m) * t_out + t - warmup] = head(w->w_head, w->b_head, h + m * H);
        }
    }
    _tile_release();
    free(act), free(c), free(h);
    return 0;
}

/* The soil-moisture LSTM (input linear + ReLU, LSTM of H hidden units, linear head) over long
 * sequences, with the gate matrix products in 8-bit integers on ARM64's dot-product instruction
 * (sdot, FEAT_DotProd: Graviton 2 and later, Apple M1 and later) and every state in float32.
 *
 * Why: one sdot does 16 multiply-adds where a float32 FMA does 4, and the step is mostly matrix
 * work. 8 bits hold random-weight networks but not trained ones (their weights' rounding
 * dominates: 1.5e-2 m3/m3 on the conus412 members), so the engine's probe moves those to the
 * float32 kernel (kernel_fp32.c), as on x86-64's VNNI (kernel_vnni.c), whose quantisation this
 * follows with signed activations: sdot multiplies signed bytes, so the ReLU output gets 127
 * levels (VNNI's unsigned product gives it 255) and h, stored signed, needs no offset.
 * Why results are reproducible: every cell is computed alone (its own scales, exact integer sums,
 * float32 in a fixed order), so its bytes do not depend on the other cells of the call, the block
 * size or the thread count.
 *
 * Layout (prepared by model/engine/__init__.py, as kernel_vnni.c's 8-bit one): gate rows regrouped
 * as [16-unit block][gate i, f, g, o][unit]; wq is (HB, K / 4, 4 gates, 16 rows, 4 bytes): for each
 * group of 4 gate inputs, the 16 rows of one gate are 4 vectors of 4 rows, the operands of 4 sdot.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "network.h"

#ifndef H
#define H 256           /* hidden units: a multiple of 16 (kernels.py builds each size) */
#endif
#define HB (H / 16)     /* blocks of 16 hidden units */
#define G (4 * H)       /* gate rows */
#define K (2 * H)       /* gate inputs: ReLU layer output, then h */
#define KQ (K / 4)      /* groups of 4 gate inputs */
#define LEVELS 127.0f   /* both halves signed: ReLU output 0..127, h -127..127 */
#define M 4             /* cells per micro-kernel: 4 x 4 sums, 4 weight and 4 input vectors */
#define CELL_BLOCK 32   /* cells whose state lives in cache together */

/* Compiled for any ARM64 CPU: callers ask this before anything below runs. Linux says what the
 * CPU has; elsewhere the kernel is passed over. */
#if defined(__linux__)
#include <sys/auxv.h>
#define DOTPROD_HWCAP (1UL << 20)  /* HWCAP_ASIMDDP */
int smapx_supported(void) { return (getauxval(AT_HWCAP) & DOTPROD_HWCAP) != 0; }
#else
int smapx_supported(void) { return 0; }
#endif

#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>
#include "vector.h"

typedef struct {
    Network net;            /* input layer, bias, head (network.h) */
    const int8_t *wq;       /* (HB, KQ, 4, 16, 4) */
    const float *scale_u;   /* (HB, 4, 16) dequantisation of the W_ih half */
    const float *scale_h;   /* (HB, 4, 16) of the W_hh half */
    const int32_t *offset_h;/* unused: h is stored signed */
} Weights;

/* v (n floats, n a multiple of 16) quantised to int8 against its largest magnitude; returns the
 * scale. */
static float quantise(const float *v, int n, int8_t *q)
{
    float32x4_t top = vdupq_n_f32(0.0f);
    for (int j = 0; j < n; j += 4)
        top = vmaxq_f32(top, vabsq_f32(vld1q_f32(v + j)));
    const float mx = vmaxvq_f32(top);
    const float32x4_t inv = vdupq_n_f32(mx > 0.0f ? LEVELS / mx : 0.0f);
    for (int j = 0; j < n; j += 16) {
        int32x4_t i0 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + j), inv));
        int32x4_t i1 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + j + 4), inv));
        int32x4_t i2 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + j + 8), inv));
        int32x4_t i3 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + j + 12), inv));
        int16x8_t lo = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
        int16x8_t hi = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
        vst1q_s8(q + j, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
    }
    return mx / LEVELS;
}

/* One group of 4 inputs (lane L of the cells' input vectors) into the sums of M cells. */
#define DOT_GROUP(L)                                                            \
    do {                                                                        \
        const int8_t *wk = wg + (q + (L)) * 256;                                \
        const int8x16_t w0 = vld1q_s8(wk), w1 = vld1q_s8(wk + 16);              \
        const int8x16_t w2 = vld1q_s8(wk + 32), w3 = vld1q_s8(wk + 48);         \
        for (int m = 0; m < M; m++) {                                           \
            acc[m][0] = vdotq_laneq_s32(acc[m][0], w0, av[m], L);               \
            acc[m][1] = vdotq_laneq_s32(acc[m][1], w1, av[m], L);               \
            acc[m][2] = vdotq_laneq_s32(acc[m][2], w2, av[m], L);               \
            acc[m][3] = vdotq_laneq_s32(acc[m][3], w3, av[m], L);               \
        }                                                                       \
    } while (0)

/* The integer sums of one gate's 16 rows (weights wg at group 0) over input groups [q0, q1) for
 * M cells' inputs a[m]. */
static inline void gate_sums(const int8_t *wg, const int8_t *const a[M], int q0, int q1,
                             int32x4_t acc[M][4])
{
    for (int m = 0; m < M; m++)
        for (int r = 0; r < 4; r++)
            acc[m][r] = vdupq_n_s32(0);
    for (int q = q0; q < q1; q += 4) {
        int8x16_t av[M];
        for (int m = 0; m < M; m++)
            av[m] = vld1q_s8(a[m] + 4 * q);
        DOT_GROUP(0);
        DOT_GROUP(1);
        DOT_GROUP(2);
        DOT_GROUP(3);
    }
}

/* One day for n cells: the gate pre-activations of every cell from act and the scales, then c
 * and h updated in place. */
static void lstm_step(const Weights *w, int n, const int8_t *act, const float *su,
                      const float *sh, float *pre, float *c, float *h)
{
    for (int hb = 0; hb < HB; hb++)
        for (int g = 0; g < 4; g++) {
            const int8_t *wg = w->wq + ((int64_t)hb * KQ * 4 + g) * 64;
            const int row = hb * 64 + g * 16;
            for (int c0 = 0; c0 < n; c0 += M) {
                const int8_t *a[M];
                int cell[M];
                for (int m = 0; m < M; m++) {
                    cell[m] = c0 + m < n ? c0 + m : n - 1;  /* a short last group repeats a cell */
                    a[m] = act + (int64_t)cell[m] * K;
                }
                int32x4_t sum_u[M][4], sum_h[M][4];
                gate_sums(wg, a, 0, H / 4, sum_u);
                gate_sums(wg, a, H / 4, KQ, sum_h);
                for (int m = 0; m < M && c0 + m < n; m++) {
                    float *p = pre + (int64_t)cell[m] * G + row;
                    for (int r = 0; r < 4; r++) {
                        const int at = row + 4 * r;
                        float32x4_t v = vfmaq_f32(
                            vld1q_f32(w->net.bias + at), vcvtq_f32_s32(sum_u[m][r]),
                            vmulq_n_f32(vld1q_f32(w->scale_u + at), su[cell[m]]));
                        v = vfmaq_f32(v, vcvtq_f32_s32(sum_h[m][r]),
                                      vmulq_n_f32(vld1q_f32(w->scale_h + at), sh[cell[m]]));
                        vst1q_f32(p + 4 * r, v);
                    }
                }
            }
        }
    for (int i = 0; i < n; i++)
        lstm_update(pre + (int64_t)i * G, c + (int64_t)i * H, h + (int64_t)i * H);
}

/* Normalised soil moisture y (ncells, T - warmup) from normalised inputs x (ncells, T, n_in),
 * starting from zero state; the first `warmup` days only spin the state up. Returns 0, or -1
 * when out of memory. */
int smapx_lstm(const Weights *w, const float *x, int64_t ncells, int64_t T, int64_t warmup,
               float *y)
{
    const int64_t t_out = T - warmup;
    int8_t *act = aligned_alloc(64, CELL_BLOCK * K);
    float *u = aligned_alloc(64, sizeof(float) * H);
    float *pre = aligned_alloc(64, sizeof(float) * CELL_BLOCK * G);
    float *c = aligned_alloc(64, sizeof(float) * CELL_BLOCK * H);
    float *h = aligned_alloc(64, sizeof(float) * CELL_BLOCK * H);
    if (!act || !u || !pre || !c || !h) {
        free(act), free(u), free(pre), free(c), free(h);
        return -1;
    }
    float su[CELL_BLOCK], sh[CELL_BLOCK];
    for (int64_t b0 = 0; b0 < ncells; b0 += CELL_BLOCK) {
        const int n = ncells - b0 < CELL_BLOCK ? (int)(ncells - b0) : CELL_BLOCK;
        memset(c, 0, sizeof(float) * CELL_BLOCK * H);
        memset(h, 0, sizeof(float) * CELL_BLOCK * H);
        for (int64_t t = 0; t < T; t++) {
            for (int i = 0; i < n; i++) {
                relu_layer(&w->net, x + ((b0 + i) * T + t) * w->net.n_in, u);
                su[i] = quantise(u, H, act + (int64_t)i * K);
                sh[i] = quantise(h + (int64_t)i * H, H, act + (int64_t)i * K + H);
            }
            lstm_step(w, n, act, su, sh, pre, c, h);
            if (t >= warmup)
                for (int i = 0; i < n; i++)
                    y[(b0 + i) * t_out + t - warmup] = head(&w->net, h + (int64_t)i * H);
        }
    }
    free(act), free(u), free(pre), free(c), free(h);
    return 0;
}

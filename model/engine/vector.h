/* The float32 vectors of the AVX2 and NEON kernels (kernel_fp32.c, kernel_neon_int8.c): one
 * vector type and the few instructions that differ per instruction set, the gate nonlinearities,
 * the ReLU input layer and the head. Included after the kernel's smapx_supported (compiled for
 * any CPU of its architecture: it runs before anything here) and its H. */
#ifndef SMAPX_ENGINE_VECTOR_H
#define SMAPX_ENGINE_VECTOR_H
#include <stdint.h>
#include "network.h"

#if defined(__x86_64__)
#include <immintrin.h>

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
#error "the float32 vectors are for x86-64 (AVX2 + FMA) and ARM64 (NEON)"
#endif

#define LOG2E 1.44269504088896341f

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

/* c and h of one cell updated in place from its gate pre-activations g (4H, in the kernels' gate
 * order: [16-unit block][i, f, g, o][unit]). */
static void lstm_update(const float *g, float *c, float *h)
{
    for (int j = 0; j < H; j += VW) {
        const float *gj = g + (j / 16) * 64 + j % 16;  /* gate i of unit j; f, g, o follow */
        vf cn = sigmoidv(vload(gj + 16)) * vload(c + j);
        cn = vfma(sigmoidv(vload(gj)), tanhv(vload(gj + 32)), cn);
        vstore(c + j, cn);
        vstore(h + j, sigmoidv(vload(gj + 48)) * tanhv(cn));
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
#endif

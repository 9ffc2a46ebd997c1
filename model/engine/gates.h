/* Float32 parts shared by the inference kernels (kernel_vnni.c, kernel_amx_bf16.c): the ReLU input
 * layer, the gate nonlinearities and the head. Included after each kernel's target pragma. */
#ifndef SMAPX_ENGINE_MATH_H
#define SMAPX_ENGINE_MATH_H
#include "simd.h"
#include <stdint.h>
#include "network.h"

#ifndef H
#define H 256           /* hidden units: a multiple of 64 (kernels.py builds each size) */
#endif
#define HB (H / 16)     /* blocks of 16 hidden units */

#define LOG2E 1.44269504088896341f

/* 2^t: 2^round(t) by scalef times 2^f, f = t - round(t) in [-1/2, 1/2], by its degree-6 Taylor
 * polynomial (relative error < 2e-7); t clamped to [-150, 126], where 2^t is 0 or finite. */
static inline __m512 exp2_512(__m512 t)
{
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-150.0f)), _mm512_set1_ps(126.0f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.5403530393381608e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* 1 / (1 + 2^t), with one Newton step on the reciprocal estimate. */
static inline __m512 logistic2_512(__m512 t)
{
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp2_512(t));
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

/* The gate nonlinearities in base 2 (the ln 2 folded into the argument's scale): within 1.5e-7
 * (sigmoid) and 3e-7 (tanh) of the exact functions, and 20 % fewer instructions than through
 * exp with a Cody-Waite reduction. */
static inline __m512 sigmoid512(__m512 x)
{
    return logistic2_512(_mm512_mul_ps(x, _mm512_set1_ps(-LOG2E)));
}

static inline __m512 tanh512(__m512 x)  /* 2 sigmoid(2x) - 1 */
{
    return _mm512_fmsub_ps(logistic2_512(_mm512_mul_ps(x, _mm512_set1_ps(-2.0f * LOG2E))),
                           _mm512_set1_ps(2.0f), _mm512_set1_ps(1.0f));
}

/* The LSTM update of 16 units from their gate pre-activations (i, f, g, o): c and h in place. */
static inline void lstm_update(__m512 gi, __m512 gf, __m512 gg, __m512 go, float *c, float *h)
{
    __m512 cn = _mm512_fmadd_ps(sigmoid512(gf), _mm512_loadu_ps(c),
                                _mm512_mul_ps(sigmoid512(gi), tanh512(gg)));
    _mm512_storeu_ps(c, cn);
    _mm512_storeu_ps(h, _mm512_mul_ps(sigmoid512(go), tanh512(cn)));
}

/* u = ReLU(W1 x + b1) for one cell and day, in 16 registers of 16 units. */
static inline void relu_layer(const Network *net, const float *x, __m512 u[HB])
{
    for (int j = 0; j < HB; j++)
        u[j] = _mm512_loadu_ps(net->b1 + 16 * j);
    for (int64_t k = 0; k < net->n_in; k++) {
        __m512 xk = _mm512_set1_ps(x[k]);
        const float *row = net->w1t + k * H;
        for (int j = 0; j < HB; j++)
            u[j] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(row + 16 * j), u[j]);
    }
    for (int j = 0; j < HB; j++)
        u[j] = _mm512_max_ps(u[j], _mm512_setzero_ps());
}

static inline float head(const Network *net, const float *h)
{
    __m512 s = _mm512_setzero_ps();
    for (int j = 0; j < HB; j++)
        s = _mm512_fmadd_ps(_mm512_loadu_ps(net->w_head + 16 * j), _mm512_loadu_ps(h + 16 * j), s);
    return _mm512_reduce_add_ps(s) + net->b_head;
}

#endif

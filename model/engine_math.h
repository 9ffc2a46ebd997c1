/* Float32 parts shared by the inference kernels (engine_kernel.c, engine_bf16.c): the ReLU input
 * layer, the gate nonlinearities and the head. Included after each kernel's target pragma. */
#ifndef SMAPX_ENGINE_MATH_H
#define SMAPX_ENGINE_MATH_H
#include <immintrin.h>
#include <stdint.h>

#define H 256           /* hidden units */
#define HB (H / 16)     /* blocks of 16 hidden units */

/* exp with Cephes' polynomial: relative error ~1e-7 over the clamped range. */
static inline __m512 exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 sigmoid512(__m512 x)
{
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x)));
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));  /* one Newton step */
}

static inline __m512 tanh512(__m512 x)
{
    __m512 s = sigmoid512(_mm512_add_ps(x, x));
    return _mm512_fmsub_ps(s, _mm512_set1_ps(2.0f), _mm512_set1_ps(1.0f));
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
static inline void relu_layer(int64_t n_in, const float *w1t, const float *b1, const float *x,
                              __m512 u[HB])
{
    for (int j = 0; j < HB; j++)
        u[j] = _mm512_loadu_ps(b1 + 16 * j);
    for (int64_t k = 0; k < n_in; k++) {
        __m512 xk = _mm512_set1_ps(x[k]);
        const float *row = w1t + k * H;
        for (int j = 0; j < HB; j++)
            u[j] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(row + 16 * j), u[j]);
    }
    for (int j = 0; j < HB; j++)
        u[j] = _mm512_max_ps(u[j], _mm512_setzero_ps());
}

static inline float head(const float *w_head, float b_head, const float *h)
{
    __m512 s = _mm512_setzero_ps();
    for (int j = 0; j < HB; j++)
        s = _mm512_fmadd_ps(_mm512_loadu_ps(w_head + 16 * j), _mm512_loadu_ps(h + 16 * j), s);
    return _mm512_reduce_add_ps(s) + b_head;
}

#endif

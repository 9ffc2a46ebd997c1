/* Exposes the kernels' gate nonlinearities (model/engine/gates.h) to tests/test_engine_math.py;
 * built with SMAPX_EMULATE, their AVX-512 operations run in portable C on any CPU. */
#include <stdint.h>
#include "../model/engine/simd.h"

int smapx_supported(void)
{
#if SMAPX_EMULATED
    return 1;
#else
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
}

SMAPX_TARGET("avx512f,fma")
#include "../model/engine/gates.h"

/* sigmoid and tanh of n floats (n a multiple of 16). */
void smapx_gates(const float *x, int64_t n, float *sigmoid, float *tanh)
{
    for (int64_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(sigmoid + i, sigmoid512(v));
        _mm512_storeu_ps(tanh + i, tanh512(v));
    }
}

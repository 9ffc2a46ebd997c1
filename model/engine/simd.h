/* The x86 SIMD of the integer and tile kernels: the compiler's intrinsics, each function compiled
 * for its instruction set, or, built with SMAPX_EMULATE, the same operations in portable C
 * (emulated.h), which the test suite uses to check those kernels on CPUs without AVX-512 or AMX. */
#ifndef SMAPX_ENGINE_SIMD_H
#define SMAPX_ENGINE_SIMD_H
#define SMAPX_PRAGMA(x) _Pragma(#x)
#ifdef SMAPX_EMULATE
#include "emulated.h"
#define SMAPX_EMULATED 1
#define SMAPX_TARGET(isa)
#define SMAPX_TARGET_ATTRIBUTE(isa)
#else
#include <immintrin.h>
#define SMAPX_EMULATED 0
#define SMAPX_TARGET(isa) SMAPX_PRAGMA(GCC target(isa))
#define SMAPX_TARGET_ATTRIBUTE(isa) __attribute__((target(isa)))
#endif
#endif

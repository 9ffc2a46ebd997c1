/* The AVX-512, VNNI, BF16 and AMX operations the integer and tile kernels use, in portable C
 * (GCC vector types and loops), for builds with SMAPX_EMULATE (simd.h): the test suite compiles
 * kernel_vnni.c, kernel_amx_int.c and kernel_amx_bf16.c this way on CPUs without those
 * instruction sets, so that their code (layouts, loops, quantisation, tile bookkeeping) is checked
 * against the float32 network on every machine. Never part of an installed kernel.
 *
 * Each operation follows the instruction's definition (Intel's SDM), with two deliberate
 * differences that no test depends on: rcp14 is an exact reciprocal (the hardware's estimate is
 * within 2^-14 and every caller refines it), and the tile instructions ignore the tile
 * configuration (these kernels configure every tile as 16 rows x 64 bytes). Integers wrap as the
 * hardware's do: the suite builds with -fwrapv.
 */
#ifndef SMAPX_ENGINE_EMULATED_H
#define SMAPX_ENGINE_EMULATED_H
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float __m512 __attribute__((vector_size(64)));
typedef int32_t __m512i __attribute__((vector_size(64)));
typedef int16_t __m256i __attribute__((vector_size(32)));
typedef uint16_t __m256bh __attribute__((vector_size(32)));
typedef int8_t __m128i __attribute__((vector_size(16)));

#define _MM_FROUND_TO_NEAREST_INT 0x00
#define _MM_FROUND_NO_EXC 0x08
#define LANES for (int i = 0; i < 16; i++)

static inline __m512 _mm512_set1_ps(float x) { __m512 r; LANES r[i] = x; return r; }
static inline __m512 _mm512_setzero_ps(void) { return _mm512_set1_ps(0.0f); }
static inline __m512 _mm512_loadu_ps(const void *p) { __m512 r; memcpy(&r, p, 64); return r; }
static inline __m512 _mm512_load_ps(const void *p) { return _mm512_loadu_ps(p); }
static inline void _mm512_storeu_ps(void *p, __m512 v) { memcpy(p, &v, 64); }
static inline void _mm512_store_ps(void *p, __m512 v) { memcpy(p, &v, 64); }
static inline __m512 _mm512_add_ps(__m512 a, __m512 b) { return a + b; }
static inline __m512 _mm512_sub_ps(__m512 a, __m512 b) { return a - b; }
static inline __m512 _mm512_mul_ps(__m512 a, __m512 b) { return a * b; }
/* maxps/minps return the second operand where the comparison fails (NaN included) */
static inline __m512 _mm512_max_ps(__m512 a, __m512 b) { __m512 r; LANES r[i] = a[i] > b[i] ? a[i] : b[i]; return r; }
static inline __m512 _mm512_min_ps(__m512 a, __m512 b) { __m512 r; LANES r[i] = a[i] < b[i] ? a[i] : b[i]; return r; }
static inline __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c) { __m512 r; LANES r[i] = fmaf(a[i], b[i], c[i]); return r; }
static inline __m512 _mm512_fmsub_ps(__m512 a, __m512 b, __m512 c) { __m512 r; LANES r[i] = fmaf(a[i], b[i], -c[i]); return r; }
static inline __m512 _mm512_fnmadd_ps(__m512 a, __m512 b, __m512 c) { __m512 r; LANES r[i] = fmaf(-a[i], b[i], c[i]); return r; }
static inline __m512 _mm512_abs_ps(__m512 a) { __m512 r; LANES r[i] = fabsf(a[i]); return r; }
static inline __m512 _mm512_rcp14_ps(__m512 a) { return 1.0f / a; }
/* only the rounding these kernels ask for: to nearest, ties to even */
static inline __m512 _mm512_roundscale_ps(__m512 a, int imm) { (void)imm; __m512 r; LANES r[i] = rintf(a[i]); return r; }
static inline __m512 _mm512_scalef_ps(__m512 a, __m512 b) { __m512 r; LANES r[i] = ldexpf(a[i], (int)floorf(b[i])); return r; }

/* The reductions in the order GCC's intrinsics take: halves, quarters, then pairs. */
#define REDUCE(name, op)                                                   \
    static inline float name(__m512 a)                                     \
    {                                                                      \
        float t[8], u[4];                                                  \
        for (int i = 0; i < 8; i++) t[i] = op(a[i + 8], a[i]);             \
        for (int i = 0; i < 4; i++) u[i] = op(t[i + 4], t[i]);             \
        return op(op(u[0], u[2]), op(u[1], u[3]));                         \
    }
#define ADD(x, y) ((x) + (y))
#define MAX(x, y) ((x) > (y) ? (x) : (y))
REDUCE(_mm512_reduce_add_ps, ADD)
REDUCE(_mm512_reduce_max_ps, MAX)

static inline __m512i _mm512_set1_epi32(int32_t x) { __m512i r; LANES r[i] = x; return r; }
static inline __m512i _mm512_setzero_si512(void) { return _mm512_set1_epi32(0); }
static inline __m512i _mm512_loadu_si512(const void *p) { __m512i r; memcpy(&r, p, 64); return r; }
static inline __m512i _mm512_load_si512(const void *p) { return _mm512_loadu_si512(p); }
static inline __m512i _mm512_add_epi32(__m512i a, __m512i b) { return a + b; }
static inline __m512i _mm512_sub_epi32(__m512i a, __m512i b) { return a - b; }
static inline __m512i _mm512_slli_epi32(__m512i a, int n) { return a << n; }
static inline __m512i _mm512_srai_epi32(__m512i a, int n) { return a >> n; }
static inline __m512i _mm512_min_epi32(__m512i a, __m512i b) { __m512i r; LANES r[i] = a[i] < b[i] ? a[i] : b[i]; return r; }
static inline __m512i _mm512_max_epi32(__m512i a, __m512i b) { __m512i r; LANES r[i] = a[i] > b[i] ? a[i] : b[i]; return r; }
static inline __m512 _mm512_castsi512_ps(__m512i a) { return (__m512)a; }
static inline __m512 _mm512_cvtepi32_ps(__m512i a) { __m512 r; LANES r[i] = (float)a[i]; return r; }

/* to nearest even; out of range (and NaN) gives the "integer indefinite", INT_MIN */
static inline __m512i _mm512_cvtps_epi32(__m512 a)
{
    __m512i r;
    LANES r[i] = a[i] >= -2147483648.0f && a[i] < 2147483648.0f ? (int32_t)rintf(a[i]) : INT_MIN;
    return r;
}

static inline __m512i _mm512_cvtepu16_epi32(__m256i a) { __m512i r; LANES r[i] = (uint16_t)a[i]; return r; }
static inline __m128i _mm512_cvtepi32_epi8(__m512i a) { __m128i r; LANES r[i] = (int8_t)a[i]; return r; }

/* the 32-bit lanes read as unsigned, saturated to 255 */
static inline __m128i _mm512_cvtusepi32_epi8(__m512i a)
{
    __m128i r;
    LANES r[i] = (int8_t)((uint32_t)a[i] > 255u ? 255u : (uint32_t)a[i]);
    return r;
}

static inline __m256i _mm512_cvtsepi32_epi16(__m512i a)
{
    __m256i r;
    LANES r[i] = a[i] > INT16_MAX ? INT16_MAX : a[i] < INT16_MIN ? INT16_MIN : a[i];
    return r;
}

static inline void _mm_storeu_si128(void *p, __m128i v) { memcpy(p, &v, 16); }
static inline void _mm256_storeu_si256(void *p, __m256i v) { memcpy(p, &v, 32); }

static inline uint16_t bf16_nearest_even(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, 4);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

static inline __m256bh _mm512_cvtneps_pbh(__m512 a) { __m256bh r; LANES r[i] = bf16_nearest_even(a[i]); return r; }

/* vpdpbusd: each 32-bit lane += its 4 unsigned bytes of a x signed bytes of b (byte j of a lane
 * taken out by shifts, so that the lanes stay vectors) */
static inline __m512i _mm512_dpbusd_epi32(__m512i acc, __m512i a, __m512i b)
{
    for (int j = 0; j < 4; j++)
        acc += ((a >> (8 * j)) & 0xFF) * ((b << (24 - 8 * j)) >> 24);
    return acc;
}

/* vpdpwssd: each 32-bit lane += the products of its two signed 16-bit halves */
static inline __m512i _mm512_dpwssd_epi32(__m512i acc, __m512i a, __m512i b)
{
    return acc + ((a << 16) >> 16) * ((b << 16) >> 16) + (a >> 16) * (b >> 16);
}

/* AMX: eight tiles of 16 rows x 64 bytes per thread, as every kernel here configures them. */
static __thread unsigned char emulated_tiles[8][16][64];

static inline void emulated_tile_loadd(int t, const void *base, long stride)
{
    for (int r = 0; r < 16; r++)
        memcpy(emulated_tiles[t][r], (const char *)base + r * stride, 64);
}

static inline void emulated_tile_stored(int t, void *base, long stride)
{
    for (int r = 0; r < 16; r++)
        memcpy((char *)base + r * stride, emulated_tiles[t][r], 64);
}

/* C (16 x 16 int32) += A (16 x 64 bytes) B (16 groups x 16 columns x 4 bytes), A's bytes signed
 * or not; B is first laid out by (group, byte, column), so that the inner loop runs along C's row */
static inline void emulated_tile_dp_int8(int c, int a, int b, int a_unsigned)
{
    int32_t sums[16][16];
    int16_t columns[16][4][16];
    memcpy(sums, emulated_tiles[c], 1024);
    for (int k = 0; k < 16; k++)
        for (int i = 0; i < 4; i++)
            for (int n = 0; n < 16; n++)
                columns[k][i][n] = (int8_t)emulated_tiles[b][k][4 * n + i];
    for (int m = 0; m < 16; m++)
        for (int k = 0; k < 16; k++)
            for (int i = 0; i < 4; i++) {
                const unsigned char byte = emulated_tiles[a][m][4 * k + i];
                const int32_t av = a_unsigned ? (int32_t)byte : (int32_t)(int8_t)byte;
                for (int n = 0; n < 16; n++)
                    sums[m][n] += av * columns[k][i][n];
            }
    memcpy(emulated_tiles[c], sums, 1024);
}

static inline float bf16_value(const unsigned char *p)
{
    uint32_t bits = (uint32_t)(p[0] | p[1] << 8) << 16;
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

/* C (16 x 16 float32) += A (16 x 32 bf16) B (16 pairs x 16 columns x 2 bf16), B laid out as the
 * int8 one's; the products of bf16 numbers are exact in float32 */
static inline void emulated_tile_dpbf16ps(int c, int a, int b)
{
    float sums[16][16], columns[16][2][16];
    memcpy(sums, emulated_tiles[c], 1024);
    for (int k = 0; k < 16; k++)
        for (int i = 0; i < 2; i++)
            for (int n = 0; n < 16; n++)
                columns[k][i][n] = bf16_value(emulated_tiles[b][k] + 4 * n + 2 * i);
    for (int m = 0; m < 16; m++)
        for (int k = 0; k < 16; k++) {
            const float a0 = bf16_value(emulated_tiles[a][m] + 4 * k);
            const float a1 = bf16_value(emulated_tiles[a][m] + 4 * k + 2);
            for (int n = 0; n < 16; n++)
                sums[m][n] += a0 * columns[k][0][n] + a1 * columns[k][1][n];
        }
    memcpy(emulated_tiles[c], sums, 1024);
}

#define _tile_loadconfig(config) ((void)(config))
#define _tile_release() ((void)0)
#define _tile_zero(t) memset(emulated_tiles[t], 0, 1024)
#define _tile_loadd(t, base, stride) emulated_tile_loadd(t, base, stride)
#define _tile_stored(t, base, stride) emulated_tile_stored(t, base, stride)
#define _tile_dpbssd(c, a, b) emulated_tile_dp_int8(c, a, b, 0)
#define _tile_dpbusd(c, a, b) emulated_tile_dp_int8(c, a, b, 1)
#define _tile_dpbf16ps(c, a, b) emulated_tile_dpbf16ps(c, a, b)

#undef LANES
#undef REDUCE
#undef ADD
#undef MAX
#endif

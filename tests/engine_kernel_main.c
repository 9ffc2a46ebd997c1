/* Runs an ARM64 kernel (model/engine/kernel_fp32.c, or kernel_neon_int8.c built with -DINT8) as a
 * program, for tests/test_inference.py to run it under qemu-user on any machine: reads the network
 * and inputs from one file, writes the outputs.
 *
 * File: int64 n_in, ncells, T, warmup; then float32 b_head, w1t (n_in x H), b1 (H), bias (4H),
 * w_head (H); the kernel's own weights: float32 w (4H / 16 x 2H x 16), or int8 wq (4H x 2H) and
 * float32 scale_u, scale_h (4H each); then x (ncells x T x n_in). Out: y (ncells x (T - warmup)).
 * Built with -DH=<units> for a network of other than 256 hidden units. Exits 7 where the CPU
 * lacks the kernel's instructions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef INT8
#include "../model/engine/kernel_neon_int8.c"
#else
#include "../model/engine/kernel_fp32.c"
#endif

static void *read_all(FILE *f, size_t size, int64_t n)
{
    void *p = aligned_alloc(64, size * (n + 64));
    if (p && fread(p, size, n, f) != (size_t)n) {
        free(p);
        return NULL;
    }
    return p;
}

static float *read_floats(FILE *f, int64_t n) { return read_all(f, sizeof(float), n); }

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    int64_t head[4];
    float b_head;
    if (!in || fread(head, sizeof head, 1, in) != 1 || fread(&b_head, sizeof b_head, 1, in) != 1)
        return 3;
    const int64_t n_in = head[0], ncells = head[1], T = head[2], warmup = head[3];
    Network net = {n_in, read_floats(in, n_in * H), read_floats(in, H), read_floats(in, G),
                   read_floats(in, H), b_head};
#ifdef INT8
    Weights w = {net, read_all(in, 1, (int64_t)G * K), read_floats(in, G), read_floats(in, G), NULL};
    const int loaded = w.wq && w.scale_u && w.scale_h;
#else
    Weights w = {net, read_floats(in, (int64_t)G * K)};
    const int loaded = w.w != NULL;
#endif
    const float *x = read_floats(in, ncells * T * n_in);
    float *y = malloc(sizeof(float) * ncells * (T - warmup));
    if (!net.w1t || !net.b1 || !net.bias || !net.w_head || !loaded || !x || !y)
        return 4;
    if (!smapx_supported())
        return 7;
    if (smapx_lstm(&w, x, ncells, T, warmup, y) != 0)
        return 5;
    FILE *out = fopen(argv[2], "wb");
    if (!out || fwrite(y, sizeof(float), ncells * (T - warmup), out) != (size_t)(ncells * (T - warmup)))
        return 6;
    return fclose(out) != 0;
}

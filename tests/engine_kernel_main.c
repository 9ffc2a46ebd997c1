/* Runs model/engine/kernel_fp32.c as a program, for tests/test_inference.py to run the ARM64 build
 * under qemu-user on any machine: reads the network and inputs from one file, writes the outputs.
 *
 * File: int64 n_in, ncells, T, warmup; then float32 b_head, w1t (n_in x H), b1 (H),
 * bias (4H), w_head (H), w (4H / 16 x 2H x 16), x (ncells x T x n_in). Out: y (ncells x (T - warmup)).
 * Built with -DH=<units> for a network of other than 256 hidden units. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "../model/engine/kernel_fp32.c"

static float *read_floats(FILE *f, int64_t n)
{
    float *p = aligned_alloc(64, sizeof(float) * (n + 16));
    if (p && fread(p, sizeof(float), n, f) != (size_t)n) {
        free(p);
        return NULL;
    }
    return p;
}

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
    Weights w = {{n_in, read_floats(in, n_in * H), read_floats(in, H), read_floats(in, G),
                  read_floats(in, H), b_head},
                 read_floats(in, (int64_t)G * K)};
    const float *x = read_floats(in, ncells * T * n_in);
    float *y = malloc(sizeof(float) * ncells * (T - warmup));
    if (!w.net.w1t || !w.net.b1 || !w.net.bias || !w.net.w_head || !w.w || !x || !y)
        return 4;
    if (!smapx_supported() || smapx_lstm(&w, x, ncells, T, warmup, y) != 0)
        return 5;
    FILE *out = fopen(argv[2], "wb");
    if (!out || fwrite(y, sizeof(float), ncells * (T - warmup), out) != (size_t)(ncells * (T - warmup)))
        return 6;
    return fclose(out) != 0;
}

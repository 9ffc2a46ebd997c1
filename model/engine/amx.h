/* AMX set-up shared by the tile kernels (kernel_amx_int.c, kernel_amx_bf16.c), included before their
 * target pragma. Linux hands out the tile registers' state only on request, once per
 * process; every tile these kernels use is 16 rows x 64 bytes. */
#ifndef SMAPX_ENGINE_AMX_H
#define SMAPX_ENGINE_AMX_H
#include "simd.h"
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

static int tiles_permitted(void)
{
#if SMAPX_EMULATED
    return 1;
#else
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#endif
}

/* Loads palette 1 with all 8 tiles at 16 rows x 64 bytes into this thread's tile state. */
SMAPX_TARGET_ATTRIBUTE("amx-tile") static void configure_tiles(void)
{
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++)
        cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
}
#endif

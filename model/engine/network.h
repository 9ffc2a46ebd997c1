/* The float32 parts of the network every inference kernel shares, the first member of each
 * kernel's weights (model/engine/__init__.py's _Network mirrors it): input layer, the summed LSTM bias in
 * the kernels' gate order ([16-unit block][i, f, g, o][unit]) and the head. */
#ifndef SMAPX_ENGINE_NETWORK_H
#define SMAPX_ENGINE_NETWORK_H
#include <stdint.h>

typedef struct {
    int64_t n_in;
    const float *w1t;       /* (n_in, H) input layer, transposed */
    const float *b1;        /* (H) */
    const float *bias;      /* (HB, 4, 16) b_ih + b_hh */
    const float *w_head;    /* (H) */
    float b_head;
} Network;

#ifdef SMAPX_SOURCE_DIGEST
/* What the library was built from (setup.py: model/engine/kernels.py's source_digest). */
const char *smapx_source_digest(void) { return SMAPX_SOURCE_DIGEST; }
#endif
#endif

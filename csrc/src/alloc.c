/* Aligned allocation for every engine buffer (the loader's tensors, the network's scratch). */
#include <stdlib.h>

#include "alloc.h"

void *bifsmn_alloc(size_t bytes)
{
    /* aligned_alloc wants a multiple of the alignment; 64 bytes covers a zmm register and a cache line. */
    const size_t rounded = (bytes + 63) / 64 * 64;
    return rounded >= bytes ? aligned_alloc(64, rounded ? rounded : 64) : NULL;
}

void bifsmn_dealloc(void *p) { free(p); }

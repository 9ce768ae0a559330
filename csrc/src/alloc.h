/* Aligned allocation with a size check; every engine buffer goes through it. */
#ifndef BIFSMN_ALLOC_H
#define BIFSMN_ALLOC_H

#include <stddef.h>

void *bifsmn_alloc(size_t bytes);
void bifsmn_dealloc(void *p);

#endif

/* fuzz_split: how the fuzz targets of the incremental parsers cut their
 * input into feeds, so that one input is parsed both whole and in pieces.
 *
 * The first byte of a fuzz input is the plan, the rest is the payload:
 *   bits 0-5: the largest piece, 1 + (bits) bytes (1..64);
 *   bit 6:    pieces vary in size (1..largest, pseudo-random from the plan
 *             byte) instead of all being the largest;
 *   bit 7:    the largest piece is 64 times bigger (64..4096 bytes).
 * So "@" (0x40) feeds one byte at a time, "A" one or two bytes, "?" 64-byte
 * pieces, 0xff pieces of 1..4096 bytes. Header-only, no state across runs.
 */
#ifndef MB_FUZZ_SPLIT_H
#define MB_FUZZ_SPLIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    size_t   largest;
    int      vary;
    uint32_t rng;
} fuzz_split;

static inline void fuzz_split_init(fuzz_split *s, uint8_t plan)
{
    s->largest = (size_t)(plan & 0x3f) + 1;
    if (plan & 0x80)
        s->largest *= 64;
    s->vary = (plan & 0x40) != 0;
    s->rng = 0x9e3779b9u ^ plan;
}

/* The size of the next piece when `left` bytes remain (left > 0): 1..left. */
static inline size_t fuzz_split_next(fuzz_split *s, size_t left)
{
    size_t n = s->largest;
    if (s->vary) {
        s->rng = s->rng * 1103515245u + 12345u;   /* an LCG is plenty here */
        n = 1 + (size_t)(s->rng >> 16) % s->largest;
    }
    return n < left ? n : left;
}

/* FNV-1a, to compare what two runs produced without keeping it all. */
static inline uint64_t fuzz_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FUZZ_HASH_INIT 0xcbf29ce484222325ull

/* A broken invariant: abort() makes libFuzzer keep the input as a crash. */
#define FUZZ_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

#endif

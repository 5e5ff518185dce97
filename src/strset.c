/* strset: ordered set of distinct strings, open addressing on FNV-1a. */
#include "strset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mb_strset {
    char   **items;    /* insertion order */
    size_t   count, cap;
    uint32_t *slots;   /* index+1 into items, 0 = empty */
    size_t   nslots;   /* power of two */
};

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

mb_strset *strset_new(void)
{
    return calloc(1, sizeof(mb_strset));
}

void strset_free(mb_strset *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i]);
    free(s->items);
    free(s->slots);
    free(s);
}

static size_t find_slot(const mb_strset *s, const char *str, size_t len, int *found)
{
    size_t mask = s->nslots - 1;
    size_t i = (size_t)hash(str, len) & mask;
    for (;;) {
        uint32_t v = s->slots[i];
        if (v == 0) {
            *found = 0;
            return i;
        }
        const char *it = s->items[v - 1];
        if (strncmp(it, str, len) == 0 && it[len] == '\0') {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int grow(mb_strset *s)
{
    size_t n = s->nslots ? s->nslots * 2 : 16;
    uint32_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return -1;
    free(s->slots);
    s->slots = slots;
    s->nslots = n;
    for (size_t k = 0; k < s->count; k++) {
        int found;
        size_t i = find_slot(s, s->items[k], strlen(s->items[k]), &found);
        s->slots[i] = (uint32_t)(k + 1);
    }
    return 0;
}

int strset_add(mb_strset *s, const char *str, size_t len)
{
    int found;
    if ((s->count + 1) * 2 > s->nslots && grow(s) != 0)
        return -1;
    size_t i = find_slot(s, str, len, &found);
    if (found)
        return 0;
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **items = realloc(s->items, cap * sizeof(*items));
        if (items == NULL)
            return -1;
        s->items = items;
        s->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, str, len);
    copy[len] = '\0';
    s->items[s->count++] = copy;
    s->slots[i] = (uint32_t)s->count;
    return 1;
}

int strset_contains(const mb_strset *s, const char *str, size_t len)
{
    int found;
    if (s->nslots == 0)
        return 0;
    find_slot(s, str, len, &found);
    return found;
}

size_t strset_count(const mb_strset *s)
{
    return s->count;
}

const char *strset_get(const mb_strset *s, size_t i)
{
    return i < s->count ? s->items[i] : NULL;
}

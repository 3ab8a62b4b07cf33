/*
 * nameset.c - set of byte strings with a hash index (see nameset.h).
 */
#include "proxy/nameset.h"

#include <stdlib.h>
#include <string.h>

#define NAMESET_DELETED UINT32_MAX

static uint32_t nameset_hash(const char *p, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    }
    return h;
}

/* The slot holding name, or the first free one on its probe path when it is
 * absent (*found says which). */
static uint32_t nameset_slot(const struct nameset *s, const char *name, size_t len, bool *found)
{
    uint32_t i = nameset_hash(name, len) & s->mask, first_free = UINT32_MAX;

    for (;;) {
        uint32_t v = s->slots[i];
        if (v == 0) {
            *found = false;
            return first_free != UINT32_MAX ? first_free : i;
        }
        if (v == NAMESET_DELETED) {
            if (first_free == UINT32_MAX) {
                first_free = i;
            }
        } else if (s->lens[v - 1] == len && memcmp(s->names[v - 1], name, len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & s->mask;
    }
}

/* Rebuild the index with room for at least want names, at most half full. */
static bool nameset_rehash(struct nameset *s, size_t want)
{
    uint32_t size = 16, *slots;

    while (size < want * 2) {
        size *= 2;
    }
    slots = calloc(size, sizeof(*slots));
    if (slots == NULL) {
        return false;
    }
    free(s->slots);
    s->slots = slots;
    s->mask = size - 1;
    s->used = s->n;
    for (size_t k = 0; k < s->n; k++) {
        bool found;
        uint32_t i = nameset_slot(s, s->names[k], s->lens[k], &found);
        s->slots[i] = (uint32_t)(k + 1);
    }
    return true;
}

bool nameset_add(struct nameset *s, const char *name, size_t len)
{
    bool found = false;
    uint32_t i;
    char *copy;

    if ((s->used + 1) * 2 > (size_t)s->mask + 1 || s->slots == NULL) {
        if (!nameset_rehash(s, s->n + 1 > 8 ? s->n + 1 : 8)) {
            return false;
        }
    }
    i = nameset_slot(s, name, len, &found);
    if (found) {
        return true;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        char **names = realloc(s->names, cap * sizeof(*names));
        size_t *lens;
        if (names == NULL) {
            return false;
        }
        s->names = names;
        lens = realloc(s->lens, cap * sizeof(*lens));
        if (lens == NULL) {
            return false;
        }
        s->lens = lens;
        s->cap = cap;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        return false;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    s->names[s->n] = copy;
    s->lens[s->n] = len;
    s->n++;
    if (s->slots[i] == 0) {
        s->used++;
    }
    s->slots[i] = (uint32_t)s->n;
    return true;
}

void nameset_remove(struct nameset *s, const char *name, size_t len)
{
    bool found = false;
    uint32_t i, k, last;

    if (s->n == 0) {
        return;
    }
    i = nameset_slot(s, name, len, &found);
    if (!found) {
        return;
    }
    k = s->slots[i] - 1;
    s->slots[i] = NAMESET_DELETED;
    free(s->names[k]);
    last = (uint32_t)(s->n - 1);
    if (k != last) {
        /* The last name moves into the hole: its slot follows. */
        uint32_t j = nameset_slot(s, s->names[last], s->lens[last], &found);
        s->names[k] = s->names[last];
        s->lens[k] = s->lens[last];
        s->slots[j] = k + 1;
    }
    s->n--;
}

void nameset_clear(struct nameset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
    }
    free(s->names);
    free(s->lens);
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

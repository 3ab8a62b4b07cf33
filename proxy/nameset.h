/*
 * nameset.h - a set of byte strings (the channels, patterns or shard
 * channels a session is subscribed to) with constant-time add, remove and
 * lookup, so that one SUBSCRIBE of many thousands of channels stays cheap.
 * Names are kept in arrays (for replay in one command) and indexed by an
 * open-addressing hash table.
 */
#ifndef SP_NAMESET_H
#define SP_NAMESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nameset {
    char **names; /* NUL-terminated copies (names may contain NUL themselves) */
    size_t *lens;
    size_t n, cap;
    uint32_t *slots; /* index + 1 into names; 0 = empty, UINT32_MAX = deleted */
    uint32_t mask;   /* slots - 1 (0 while there is no table) */
    size_t used;     /* slots not empty (names + deleted) */
};

/* Add name (a copy is kept); true when present afterwards, false if out of
 * memory. */
bool nameset_add(struct nameset *s, const char *name, size_t len)
    __attribute__((warn_unused_result));

/* Remove name if present. */
void nameset_remove(struct nameset *s, const char *name, size_t len);

/* Forget every name and free the storage (the set stays usable). */
void nameset_clear(struct nameset *s);

#endif

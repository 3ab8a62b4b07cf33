/*
 * yamltree.h - a small YAML document tree with line numbers, built from
 * libyaml's event stream for the configuration loader.
 *
 * Only what a configuration file needs: scalars, mappings and sequences.
 * Aliases, more than one document, nesting deeper than YAMLTREE_DEPTH and
 * duplicate mapping keys are refused, so hostile files cannot blow up memory
 * or be ambiguous.
 */
#ifndef SP_YAMLTREE_H
#define SP_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>

#define YAMLTREE_DEPTH 8

enum yamltree_kind {
    YT_SCALAR = 0,
    YT_MAP = 1, /* items alternate key (a scalar), value */
    YT_SEQ = 2,
};

struct ynode {
    int kind;
    int line;   /* 1-based line where the node starts */
    bool plain; /* scalar written without quotes (so "~" and "" mean empty) */
    char *text; /* scalar text (NUL-terminated), NULL for collections */
    struct ynode **items;
    size_t n;
};

/* Parse a whole document; NULL with "LINE: problem" (or "problem") in err.
 * An empty document gives an empty mapping. */
struct ynode *yamltree_parse(const char *text, size_t len, char *err, size_t errlen);

/* Free a tree (NULL is fine). */
void yamltree_free(struct ynode *n);

#endif

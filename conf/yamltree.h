/*
 * yamltree.h - a small YAML document tree with line numbers, built from
 * libyaml's event stream for the configuration loader.
 *
 * Only what a configuration file needs: scalars, mappings and sequences.
 * Aliases and anchors, more than one document, and nesting deeper than
 * YAMLTREE_DEPTH are refused while parsing, so a hostile file cannot make the
 * tree share nodes, grow without bound in depth, or mean two things. Tags are
 * ignored: every scalar is text, typed later by the key it belongs to.
 * Duplicate mapping keys are left to the caller, which knows the key's full
 * name for the message.
 */
#ifndef SP_YAMLTREE_H
#define SP_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>

#define YAMLTREE_DEPTH 8 /* collections nested in each other, the top one included */

enum yamltree_kind {
    YAMLTREE_SCALAR = 0,
    YAMLTREE_MAP = 1, /* items alternate: key (always a scalar), value */
    YAMLTREE_SEQ = 2,
};

struct yamltree_node {
    enum yamltree_kind kind;
    int line;   /* 1-based line where the node starts */
    bool plain; /* scalar written without quotes (only then can it be null) */
    char *text; /* scalar text, NUL-terminated (NUL bytes inside are refused) */
    struct yamltree_node **items;
    size_t n, cap;
};

/* Parse one document. NULL on error, with the problem in err and its line in
 * *line (0 when unknown). A stream with no document, or a null document,
 * gives an empty mapping. */
struct yamltree_node *yamltree_parse(const char *text, size_t len, int *line, char *err,
                                     size_t errlen);

/* Free a tree (NULL is fine). */
void yamltree_free(struct yamltree_node *n);

/* True for a plain scalar that YAML reads as null: empty, ~ or null. */
bool yamltree_is_null(const struct yamltree_node *n);

/* "a value", "a list" or "a mapping", for messages. */
const char *yamltree_kind_name(const struct yamltree_node *n);

#endif

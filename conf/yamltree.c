/*
 * yamltree.c - build a yamltree_node tree from libyaml's events.
 *
 * The event API is used rather than libyaml's document loader because the
 * loader resolves aliases (a few bytes of "billion laughs" expand into a huge
 * tree) and has no depth limit; here both are refused as the events arrive.
 * Every node is attached to its parent as soon as it is created, so freeing
 * the root frees everything on every error path.
 */
#include "conf/yamltree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct yamltree_builder {
    struct yamltree_node *stack[YAMLTREE_DEPTH]; /* open collections */
    int depth;
    int documents;
    struct yamltree_node *root;
    int *line;
    char *err;
    size_t errlen;
};

static bool yamltree_fail(struct yamltree_builder *b, int line, const char *msg)
{
    *b->line = line;
    snprintf(b->err, b->errlen, "%s", msg);
    return false;
}

void yamltree_free(struct yamltree_node *n)
{
    if (n == NULL) {
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        yamltree_free(n->items[i]);
    }
    free(n->items);
    free(n->text);
    free(n);
}

bool yamltree_is_null(const struct yamltree_node *n)
{
    return n->kind == YAMLTREE_SCALAR && n->plain &&
           (n->text[0] == '\0' || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

const char *yamltree_kind_name(const struct yamltree_node *n)
{
    if (n->kind == YAMLTREE_MAP) {
        return "a mapping";
    }
    return n->kind == YAMLTREE_SEQ ? "a list" : "a value";
}

/* Hand n to its parent (or make it the root); on failure n is freed. */
static bool yamltree_attach(struct yamltree_builder *b, struct yamltree_node *n)
{
    struct yamltree_node *parent;
    int line = n->line;

    if (b->depth == 0) {
        b->root = n; /* only one document is let through, so only one root */
        return true;
    }
    parent = b->stack[b->depth - 1];
    if (parent->kind == YAMLTREE_MAP && parent->n % 2 == 0 && n->kind != YAMLTREE_SCALAR) {
        yamltree_free(n);
        return yamltree_fail(b, line, "mapping keys must be scalars");
    }
    if (parent->n == parent->cap) {
        /* Doubling keeps a list of a few hundred thousand items linear. */
        size_t cap = parent->cap == 0 ? 8 : parent->cap * 2;
        struct yamltree_node **items = realloc(parent->items, cap * sizeof(*items));
        if (items == NULL) {
            yamltree_free(n);
            return yamltree_fail(b, line, "out of memory");
        }
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = n;
    return true;
}

static struct yamltree_node *yamltree_new(enum yamltree_kind kind, int line)
{
    struct yamltree_node *n = calloc(1, sizeof(*n));

    if (n != NULL) {
        n->kind = kind;
        n->line = line;
    }
    return n;
}

static bool yamltree_open(struct yamltree_builder *b, enum yamltree_kind kind, int line)
{
    struct yamltree_node *n;

    if (b->depth >= YAMLTREE_DEPTH) {
        return yamltree_fail(b, line, "nested deeper than 8 levels");
    }
    n = yamltree_new(kind, line);
    if (n == NULL) {
        return yamltree_fail(b, line, "out of memory");
    }
    if (!yamltree_attach(b, n)) {
        return false;
    }
    b->stack[b->depth++] = n;
    return true;
}

static bool yamltree_scalar(struct yamltree_builder *b, const yaml_event_t *ev, int line)
{
    size_t len = ev->data.scalar.length;
    struct yamltree_node *n;

    /* A NUL inside a value would silently cut it short everywhere it is used. */
    if (memchr(ev->data.scalar.value, '\0', len) != NULL) {
        return yamltree_fail(b, line, "NUL character in a value");
    }
    n = yamltree_new(YAMLTREE_SCALAR, line);
    if (n == NULL || (n->text = malloc(len + 1)) == NULL) {
        free(n);
        return yamltree_fail(b, line, "out of memory");
    }
    memcpy(n->text, ev->data.scalar.value, len);
    n->text[len] = '\0';
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return yamltree_attach(b, n);
}

/* Handle one event; false on error. *end is set at the end of the stream. */
static bool yamltree_event(struct yamltree_builder *b, const yaml_event_t *ev, bool *end)
{
    int line = (int)ev->start_mark.line + 1;

    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        *end = true;
        return true;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1) {
            return yamltree_fail(b, line, "more than one YAML document");
        }
        return true;
    case YAML_ALIAS_EVENT:
        return yamltree_fail(b, line, "YAML aliases are not supported");
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor != NULL) {
            return yamltree_fail(b, line, "YAML anchors are not supported");
        }
        return yamltree_scalar(b, ev, line);
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.anchor != NULL) {
            return yamltree_fail(b, line, "YAML anchors are not supported");
        }
        return yamltree_open(b, YAMLTREE_SEQ, line);
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.anchor != NULL) {
            return yamltree_fail(b, line, "YAML anchors are not supported");
        }
        return yamltree_open(b, YAMLTREE_MAP, line);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        b->depth--;
        return true;
    default:
        return true; /* stream start, document end */
    }
}

/* libyaml gives no line for encoding errors, only a byte offset. */
static int yamltree_error_line(const yaml_parser_t *parser, const char *text, size_t len)
{
    int line = 1;

    if (parser->error != YAML_READER_ERROR) {
        return (int)parser->problem_mark.line + 1;
    }
    for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
        line += text[i] == '\n';
    }
    return line;
}

struct yamltree_node *yamltree_parse(const char *text, size_t len, int *line, char *err,
                                     size_t errlen)
{
    struct yamltree_builder b;
    yaml_parser_t parser;
    bool end = false, ok = true;

    memset(&b, 0, sizeof(b));
    b.line = line;
    b.err = err;
    b.errlen = errlen;
    *line = 0;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "cannot initialise the YAML parser");
        return NULL;
    }
    /* libyaml insists on a non-NULL input even when it is empty. */
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text != NULL ? text : ""),
                                 text != NULL ? len : 0);
    while (ok && !end) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            *line = yamltree_error_line(&parser, text, len);
            snprintf(err, errlen, "YAML syntax error: %s",
                     parser.problem != NULL ? parser.problem : "unknown problem");
            ok = false;
            break;
        }
        ok = yamltree_event(&b, &ev, &end);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (!ok) {
        yamltree_free(b.root);
        return NULL;
    }
    if (b.root == NULL || yamltree_is_null(b.root)) {
        /* An empty file, or one that is just "~", sets nothing. */
        yamltree_free(b.root);
        b.root = yamltree_new(YAMLTREE_MAP, 1);
        if (b.root == NULL) {
            snprintf(err, errlen, "out of memory");
        }
    }
    return b.root;
}

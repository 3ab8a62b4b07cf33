/*
 * yamltree.c - build a ynode tree from libyaml events.
 */
#include "conf/yamltree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct yt_builder {
    struct ynode *stack[YAMLTREE_DEPTH + 1];
    int depth;
    struct ynode *root;
    char *err;
    size_t errlen;
};

static struct ynode *yt_new(int kind, int line)
{
    struct ynode *n = calloc(1, sizeof(*n));

    if (n != NULL) {
        n->kind = kind;
        n->line = line;
    }
    return n;
}

void yamltree_free(struct ynode *n)
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

static bool yt_fail(struct yt_builder *b, int line, const char *msg)
{
    if (line > 0) {
        snprintf(b->err, b->errlen, "%d: %s", line, msg);
    } else {
        snprintf(b->err, b->errlen, "%s", msg);
    }
    return false;
}

/* A mapping key must not appear twice. */
static bool yt_duplicate(const struct ynode *map, const struct ynode *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        if (map->items[i]->text != NULL && key->text != NULL &&
            strcmp(map->items[i]->text, key->text) == 0) {
            return true;
        }
    }
    return false;
}

static bool yt_attach(struct yt_builder *b, struct ynode *n)
{
    struct ynode *parent;
    struct ynode **items;

    if (b->depth == 0) {
        if (b->root != NULL) {
            yamltree_free(n);
            return yt_fail(b, n->line, "more than one document");
        }
        b->root = n;
        return true;
    }
    parent = b->stack[b->depth - 1];
    if (parent->kind == YT_MAP && parent->n % 2 == 0) {
        if (n->kind != YT_SCALAR) {
            int line = n->line;
            yamltree_free(n);
            return yt_fail(b, line, "mapping keys must be plain scalars");
        }
        if (yt_duplicate(parent, n)) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%.100s: duplicate key", n->text);
            int line = n->line;
            yamltree_free(n);
            return yt_fail(b, line, msg);
        }
    }
    items = realloc(parent->items, (parent->n + 1) * sizeof(*items));
    if (items == NULL) {
        yamltree_free(n);
        return yt_fail(b, 0, "out of memory");
    }
    parent->items = items;
    parent->items[parent->n++] = n;
    return true;
}

static bool yt_open(struct yt_builder *b, int kind, int line)
{
    struct ynode *n;

    if (b->depth >= YAMLTREE_DEPTH) {
        return yt_fail(b, line, "nested too deeply");
    }
    n = yt_new(kind, line);
    if (n == NULL) {
        return yt_fail(b, 0, "out of memory");
    }
    if (!yt_attach(b, n)) {
        return false;
    }
    b->stack[b->depth++] = n;
    return true;
}

static bool yt_scalar(struct yt_builder *b, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1;
    struct ynode *n = yt_new(YT_SCALAR, line);

    if (n == NULL) {
        return yt_fail(b, 0, "out of memory");
    }
    n->text = malloc(ev->data.scalar.length + 1);
    if (n->text == NULL) {
        free(n);
        return yt_fail(b, 0, "out of memory");
    }
    memcpy(n->text, ev->data.scalar.value, ev->data.scalar.length);
    n->text[ev->data.scalar.length] = '\0';
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (strlen(n->text) != ev->data.scalar.length) {
        yamltree_free(n);
        return yt_fail(b, line, "NUL byte in a value");
    }
    return yt_attach(b, n);
}

/* Handle one event; false on error. *end set at the stream's end. */
static bool yt_event(struct yt_builder *b, const yaml_event_t *ev, bool *end)
{
    int line = (int)ev->start_mark.line + 1;

    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        *end = true;
        return true;
    case YAML_ALIAS_EVENT:
        return yt_fail(b, line, "YAML aliases are not supported");
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor != NULL) {
            return yt_fail(b, line, "YAML anchors are not supported");
        }
        return yt_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.anchor != NULL) {
            return yt_fail(b, line, "YAML anchors are not supported");
        }
        return yt_open(b, YT_SEQ, line);
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.anchor != NULL) {
            return yt_fail(b, line, "YAML anchors are not supported");
        }
        return yt_open(b, YT_MAP, line);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        b->depth--;
        return true;
    default:
        return true; /* stream/document start and end */
    }
}

struct ynode *yamltree_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct yt_builder b;
    yaml_parser_t parser;
    bool end = false, ok = true;

    memset(&b, 0, sizeof(b));
    b.err = err;
    b.errlen = errlen;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (ok && !end) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "%d: YAML syntax error: %s", (int)parser.problem_mark.line + 1,
                     parser.problem != NULL ? parser.problem : "unknown problem");
            ok = false;
            break;
        }
        ok = yt_event(&b, &ev, &end);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (!ok) {
        yamltree_free(b.root);
        return NULL;
    }
    if (b.root == NULL || (b.root->kind == YT_SCALAR && b.root->plain &&
                           (strcmp(b.root->text, "") == 0 || strcmp(b.root->text, "~") == 0 ||
                            strcmp(b.root->text, "null") == 0))) {
        yamltree_free(b.root);
        b.root = yt_new(YT_MAP, 1);
        if (b.root == NULL) {
            snprintf(err, errlen, "out of memory");
        }
    }
    return b.root;
}

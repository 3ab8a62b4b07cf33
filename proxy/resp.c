/*
 * resp.c - pull parser for complete replies (see resp.h).
 */
#include "proxy/resp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RESP_SKIP_DEPTH 64

void resp_reader_init(struct resp_reader *r, const char *buf, size_t len)
{
    r->p = buf;
    r->end = buf + len;
}

/* One line up to CRLF; line and len get its content. */
static bool resp_line(struct resp_reader *r, const char **line, size_t *len)
{
    const char *cr = memchr(r->p, '\r', (size_t)(r->end - r->p));

    if (cr == NULL || cr + 1 >= r->end || cr[1] != '\n') {
        return false;
    }
    *line = r->p;
    *len = (size_t)(cr - r->p);
    r->p = cr + 2;
    return true;
}

static bool resp_parse_int(const char *s, size_t len, int64_t *out)
{
    char buf[24];
    char *end;

    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtoll(buf, &end, 10);
    return *end == '\0';
}

bool resp_next(struct resp_reader *r, struct resp_value *v)
{
    const char *line;
    size_t len;

    if (r->p >= r->end) {
        return false;
    }
    memset(v, 0, sizeof(*v));
    v->type = *r->p++;
    if (!resp_line(r, &line, &len)) {
        return false;
    }
    switch (v->type) {
    case '+':
    case '-':
    case ',':
    case '#':
    case '(':
        v->s = line;
        v->len = len;
        return true;
    case '_':
        v->n = -1;
        return true;
    case ':':
        return resp_parse_int(line, len, &v->n);
    case '$':
    case '!':
    case '=':
        if (!resp_parse_int(line, len, &v->n)) {
            return false;
        }
        if (v->n < 0) {
            return true;
        }
        if (r->end - r->p < v->n + 2) {
            return false;
        }
        v->s = r->p;
        v->len = (size_t)v->n;
        r->p += v->n + 2;
        return true;
    case '*':
    case '~':
    case '>':
        return resp_parse_int(line, len, &v->n);
    case '%':
    case '|':
        if (!resp_parse_int(line, len, &v->n)) {
            return false;
        }
        v->n *= 2;
        return true;
    default:
        return false;
    }
}

static bool resp_skip_depth(struct resp_reader *r, int depth)
{
    struct resp_value v;

    if (depth > RESP_SKIP_DEPTH || !resp_next(r, &v)) {
        return false;
    }
    if (v.type == '*' || v.type == '~' || v.type == '>' || v.type == '%' || v.type == '|') {
        for (int64_t i = 0; i < v.n; i++) {
            if (!resp_skip_depth(r, depth + 1)) {
                return false;
            }
        }
        if (v.type == '|') {
            return resp_skip_depth(r, depth + 1); /* the value an attribute annotates */
        }
    }
    return true;
}

bool resp_skip(struct resp_reader *r)
{
    return resp_skip_depth(r, 0);
}

bool resp_int(const struct resp_value *v, int64_t *out)
{
    if (v->type == ':') {
        *out = v->n;
        return true;
    }
    if ((v->type == '$' || v->type == '+') && v->s != NULL) {
        return resp_parse_int(v->s, v->len, out);
    }
    return false;
}

bool resp_is(const struct resp_value *v, const char *word)
{
    size_t n = strlen(word);

    return (v->type == '$' || v->type == '+') && v->s != NULL && v->len == n &&
           strncasecmp(v->s, word, n) == 0;
}

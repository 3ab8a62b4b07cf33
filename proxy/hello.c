/*
 * hello.c - HELLO as the proxy answers it (see hello.h).
 */
#include "proxy/hello.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/strbuf.h"
#include "proxy/req.h"
#include "proxy/resp.h"

#define HELLO_DEPTH 16 /* nesting followed in a modules list */

/* Copy a string value into dst (HELLO_WORD bytes); false when it is not a
 * string or too long. */
static bool hello_word(const struct resp_value *v, char *dst)
{
    if ((v->type != '$' && v->type != '+') || v->s == NULL || v->len >= HELLO_WORD) {
        return false;
    }
    memcpy(dst, v->s, v->len);
    dst[v->len] = '\0';
    return true;
}

/* Append one error or simple string line, its CR and LF turned to spaces. */
static void hello_line(struct strbuf *sb, char type, const char *s, size_t len)
{
    strbuf_append(sb, &type, 1);
    for (size_t i = 0; i < len; i++) {
        char ch = s[i] == '\r' || s[i] == '\n' ? ' ' : s[i];
        strbuf_append(sb, &ch, 1);
    }
    strbuf_append(sb, "\r\n", 2);
}

/* Convert one RESP3 value to what a RESP2 connection gets for it (maps as
 * flat arrays, sets and pushes as arrays, doubles and big numbers as bulk
 * strings, booleans as integers, nulls as null bulk strings). */
static bool hello_to_resp2(struct resp_reader *rd, struct strbuf *sb, int depth)
{
    struct resp_value v;

    if (depth > HELLO_DEPTH || !resp_next(rd, &v)) {
        return false;
    }
    switch (v.type) {
    case '+':
    case '-':
        hello_line(sb, v.type, v.s, v.len);
        return true;
    case '!':
        hello_line(sb, '-', v.s != NULL ? v.s : "", v.s != NULL ? v.len : 0);
        return true;
    case ':':
        strbuf_printf(sb, ":%lld\r\n", (long long)v.n);
        return true;
    case '#':
        strbuf_append(sb, v.len > 0 && v.s[0] == 't' ? ":1\r\n" : ":0\r\n", 4);
        return true;
    case '_':
        strbuf_append(sb, "$-1\r\n", 5);
        return true;
    case '$':
    case ',':
    case '(':
        if (v.s == NULL) {
            strbuf_append(sb, "$-1\r\n", 5);
        } else {
            strbuf_bulk(sb, v.s, v.len);
        }
        return true;
    case '=':
        /* A verbatim string without its "txt:" format prefix. */
        if (v.s == NULL || v.len < 4) {
            strbuf_append(sb, "$-1\r\n", 5);
        } else {
            strbuf_bulk(sb, v.s + 4, v.len - 4);
        }
        return true;
    case '|':
        for (int64_t i = 0; i < v.n; i++) {
            if (!resp_skip(rd)) {
                return false;
            }
        }
        return hello_to_resp2(rd, sb, depth + 1); /* the value it annotates */
    case '*':
    case '~':
    case '>':
    case '%':
        if (v.n < 0) {
            strbuf_append(sb, "*-1\r\n", 5);
            return true;
        }
        strbuf_printf(sb, "*%lld\r\n", (long long)v.n);
        for (int64_t i = 0; i < v.n; i++) {
            if (!hello_to_resp2(rd, sb, depth + 1)) {
                return false;
            }
        }
        return true;
    default:
        return false;
    }
}

/* Keep the modules value that starts at rd in both protocols. */
static bool hello_modules(struct hello_facts *f, struct resp_reader *rd)
{
    const char *start = rd->p;
    struct resp_reader copy = *rd;
    struct strbuf sb;
    char *raw;

    if (!resp_skip(rd)) {
        return false;
    }
    strbuf_init(&sb);
    if (!hello_to_resp2(&copy, &sb, 0) || sb.oom ||
        (raw = malloc((size_t)(rd->p - start))) == NULL) {
        strbuf_free(&sb);
        return false;
    }
    memcpy(raw, start, (size_t)(rd->p - start));
    free(f->modules3);
    free(f->modules2);
    f->modules3 = raw;
    f->modules3_len = (size_t)(rd->p - start);
    f->modules2 = sb.buf; /* the buffer is handed over */
    f->modules2_len = sb.len;
    return true;
}

bool hello_learn(struct hello_facts *f, const char *buf, size_t len)
{
    struct hello_facts n;
    struct resp_reader rd;
    struct resp_value v, key, val;

    memset(&n, 0, sizeof(n));
    resp_reader_init(&rd, buf, len);
    if (!resp_next(&rd, &v) || v.type != '%') {
        return false;
    }
    for (int64_t i = 0; i < v.n / 2; i++) {
        const char *at;
        if (!resp_next(&rd, &key)) {
            hello_forget(&n);
            return false;
        }
        at = rd.p;
        if (resp_is(&key, "modules")) {
            if (!hello_modules(&n, &rd)) {
                hello_forget(&n);
                return false;
            }
            continue;
        }
        if (!resp_next(&rd, &val)) {
            hello_forget(&n);
            return false;
        }
        if (resp_is(&key, "server")) {
            hello_word(&val, n.server);
        } else if (resp_is(&key, "version")) {
            hello_word(&val, n.version);
        } else if (resp_is(&key, "mode")) {
            hello_word(&val, n.mode);
        }
        rd.p = at;
        if (!resp_skip(&rd)) {
            hello_forget(&n);
            return false;
        }
    }
    if (n.version[0] == '\0') {
        hello_forget(&n);
        return false;
    }
    if (n.server[0] == '\0') {
        strcpy(n.server, "redis");
    }
    if (n.mode[0] == '\0') {
        strcpy(n.mode, "standalone");
    }
    n.resp3 = HELLO_RESP3;
    hello_forget(f);
    *f = n;
    return true;
}

void hello_forget(struct hello_facts *f)
{
    free(f->modules3);
    free(f->modules2);
    memset(f, 0, sizeof(*f));
}

/* A protocol version as redis-server reads an integer argument: an
 * optional minus and decimal digits, no leading zero, within 64 bits. */
static bool hello_int(const char *p, size_t len, long long *out)
{
    unsigned long long v = 0;
    size_t i = p != NULL && len > 0 && p[0] == '-' ? 1 : 0;

    if (p == NULL || i == len || len - i > 19 || (p[i] == '0' && (len - i > 1 || i == 1))) {
        return false;
    }
    for (size_t k = i; k < len; k++) {
        if (p[k] < '0' || p[k] > '9') {
            return false;
        }
        v = v * 10 + (unsigned long long)(p[k] - '0');
    }
    if (v > (unsigned long long)INT64_MAX + (i == 1 ? 1u : 0u)) {
        return false;
    }
    *out = i == 1 ? (long long)(0 - v) : (long long)v;
    return true;
}

/* A client name redis-server accepts: printable ASCII without spaces. */
static bool hello_name_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '!' || s[i] > '~') {
            return false;
        }
    }
    return true;
}

void hello_parse(const struct req_args *a, struct hello_args *h)
{
    memset(h, 0, sizeof(*h));
    if (a->argc >= 2) {
        long long ver;
        if (!hello_int(a->argv[1], a->argl[1], &ver)) {
            snprintf(h->error, sizeof(h->error),
                     "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            snprintf(h->error, sizeof(h->error), "NOPROTO unsupported protocol version");
            return;
        }
        h->proto = (int)ver;
    }
    for (int j = 2; j < a->argc; j++) {
        int more = a->argc - 1 - j;
        if (a->argl[j] == 4 && strncasecmp(a->argv[j], "auth", 4) == 0 && more >= 2) {
            h->auth = j + 1;
            j += 2;
        } else if (a->argl[j] == 7 && strncasecmp(a->argv[j], "setname", 7) == 0 && more >= 1) {
            if (!hello_name_ok(a->argv[j + 1], a->argl[j + 1])) {
                snprintf(h->error, sizeof(h->error),
                         "ERR Client names cannot contain spaces, newlines or special "
                         "characters.");
                return;
            }
            h->name = j + 1;
            j++;
        } else {
            /* The option as given (at most 120 bytes), on one line. */
            int n = a->argl[j] > 120 ? 120 : (int)a->argl[j];
            int at = snprintf(h->error, sizeof(h->error), "ERR Syntax error in HELLO option '");
            for (int k = 0; k < n; k++) {
                char ch = a->argv[j][k];
                h->error[at++] = ch == '\r' || ch == '\n' ? ' ' : ch;
            }
            snprintf(h->error + at, sizeof(h->error) - (size_t)at, "'");
            return;
        }
    }
}

void hello_reply(const struct hello_facts *f, int proto, uint64_t id, struct strbuf *sb)
{
    const char *modules = proto == 3 ? f->modules3 : f->modules2;
    size_t modules_len = proto == 3 ? f->modules3_len : f->modules2_len;

    strbuf_append(sb, proto == 3 ? "%7\r\n" : "*14\r\n", proto == 3 ? 4 : 5);
    strbuf_bulk(sb, "server", 6);
    strbuf_bulk(sb, f->server, strlen(f->server));
    strbuf_bulk(sb, "version", 7);
    strbuf_bulk(sb, f->version, strlen(f->version));
    strbuf_bulk(sb, "proto", 5);
    strbuf_printf(sb, ":%d\r\n", proto);
    strbuf_bulk(sb, "id", 2);
    strbuf_printf(sb, ":%llu\r\n", (unsigned long long)id);
    strbuf_bulk(sb, "mode", 4);
    strbuf_bulk(sb, f->mode, strlen(f->mode));
    strbuf_bulk(sb, "role", 4);
    strbuf_bulk(sb, "master", 6);
    strbuf_bulk(sb, "modules", 7);
    if (modules != NULL) {
        strbuf_append(sb, modules, modules_len);
    } else {
        strbuf_append(sb, "*0\r\n", 4);
    }
}

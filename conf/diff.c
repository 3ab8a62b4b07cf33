/*
 * diff.c - what a reload changes: a freshly loaded configuration compared
 * with the one running, key by key through the same table as the loader
 * (config.c), so that every key is covered and reported the same way.
 *
 * A key whose row says it cannot change without a restart gets the running
 * value back in the new configuration, so that the rest of the program only
 * ever sees values it can apply.
 */
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "conf/config_int.h"

#define DIFF_TEXT_MAX 1024 /* a value as reported; longer lists end in "..." */

static const void *diff_field(const struct config *cfg, const struct config_key *k)
{
    return (const char *)cfg + k->off;
}

static bool diff_str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The same address as written (one may be resolved, the other not yet). */
static bool diff_addr_eq(const struct addr *a, const struct addr *b)
{
    return (a->family == AF_UNIX) == (b->family == AF_UNIX) && a->port == b->port &&
           strcmp(a->host, b->host) == 0;
}

/* Two scalar fields (or TLS settings fields) of type k->type. */
static bool diff_scalar_eq(const struct config_key *k, const void *a, const void *b)
{
    switch (k->type) {
    case CT_INT:
    case CT_WORKERS:
    case CT_LOGLEVEL:
    case CT_ENUM:
        return *(const int *)a == *(const int *)b;
    case CT_SIZE:
    case CT_DURATION:
        return *(const uint64_t *)a == *(const uint64_t *)b;
    case CT_BOOL:
        return *(const bool *)a == *(const bool *)b;
    case CT_STRING:
    case CT_NAME:
        return diff_str_eq(*(char *const *)a, *(char *const *)b);
    case CT_ADDR:
    case CT_HOSTPORT:
        return diff_addr_eq(a, b);
    default:
        return false;
    }
}

static bool diff_tls_eq(const struct tls_settings *a, const struct tls_settings *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    for (size_t i = 0; i < CONFIG_TLS_FIELDS; i++) {
        const struct config_key *f = &config_item_keys[ITEM_TLS_FIELDS + i];
        if (!diff_scalar_eq(f, (const char *)a + f->off, (const char *)b + f->off)) {
            return false;
        }
    }
    return true;
}

static bool diff_list_eq(const struct config_key *k, const struct config *a, const struct config *b)
{
    if (k->type == CT_LISTEN) {
        if (a->nlisteners != b->nlisteners) {
            return false;
        }
        for (size_t i = 0; i < a->nlisteners; i++) {
            const struct config_listener *x = &a->listeners[i], *y = &b->listeners[i];
            if (!diff_addr_eq(&x->addr, &y->addr) || x->read_from != y->read_from ||
                x->tls != y->tls || !diff_tls_eq(x->tls_own, y->tls_own)) {
                return false;
            }
        }
        return true;
    }
    if (k->type == CT_ADDRLIST) {
        if (a->nsentinels != b->nsentinels) {
            return false;
        }
        for (size_t i = 0; i < a->nsentinels; i++) {
            if (!diff_addr_eq(&a->sentinels[i], &b->sentinels[i])) {
                return false;
            }
        }
        return true;
    }
    if (a->nreplica_prefs != b->nreplica_prefs) {
        return false;
    }
    for (size_t i = 0; i < a->nreplica_prefs; i++) {
        const struct config_replica_pref *x = &a->replica_prefs[i], *y = &b->replica_prefs[i];
        if (!diff_str_eq(x->address, y->address) || x->weight != y->weight ||
            !diff_str_eq(x->zone, y->zone)) {
            return false;
        }
    }
    return true;
}

/* Append to buf (len bytes, used so far in *used), ending in "..." when full. */
static void diff_append(char *buf, size_t len, size_t *used, const char *s)
{
    size_t n = strlen(s);

    if (*used + n + 1 > len) {
        if (len > 4 && *used + 4 <= len) {
            memcpy(buf + *used, "...", 4);
            *used = len; /* nothing more fits */
        }
        return;
    }
    memcpy(buf + *used, s, n + 1);
    *used += n;
}

static void diff_list_text(const struct config_key *k, const struct config *cfg, char *buf,
                           size_t len)
{
    char item[ADDR_TEXT_MAX + 96], a[ADDR_TEXT_MAX], show[CONFIG_SHOW_MAX + 1];
    size_t used = 0, n = k->type == CT_LISTEN     ? cfg->nlisteners
                         : k->type == CT_ADDRLIST ? cfg->nsentinels
                                                  : cfg->nreplica_prefs;

    buf[0] = '\0';
    if (n == 0) {
        diff_append(buf, len, &used, "(none)");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (k->type == CT_LISTEN) {
            const struct config_listener *l = &cfg->listeners[i];
            addr_format(&l->addr, a, sizeof(a));
            snprintf(item, sizeof(item), "%s%s%s%s%s", l->tls ? "tls://" : "", a,
                     l->tls_own != NULL ? " (own tls settings)" : "",
                     l->read_from >= 0 ? " read-from=" : "",
                     l->read_from >= 0 ? config_item_keys[ITEM_READ_FROM].choices[l->read_from]
                                       : "");
        } else if (k->type == CT_ADDRLIST) {
            addr_format(&cfg->sentinels[i], item, sizeof(item));
        } else {
            const struct config_replica_pref *p = &cfg->replica_prefs[i];
            snprintf(item, sizeof(item), "%s weight=%d%s%s", config_show(p->address, a, sizeof(a)),
                     p->weight, p->zone != NULL ? " zone=" : "",
                     p->zone != NULL ? config_show(p->zone, show, sizeof(show)) : "");
        }
        diff_append(buf, len, &used, i > 0 ? ", " : "");
        diff_append(buf, len, &used, item);
    }
}

static void diff_text(const struct config_key *k, const struct config *cfg, char *buf, size_t len)
{
    const void *f = diff_field(cfg, k);
    char a[ADDR_TEXT_MAX];

    switch (k->type) {
    case CT_INT:
        snprintf(buf, len, "%d", *(const int *)f);
        return;
    case CT_WORKERS:
        if (*(const int *)f == 0) {
            snprintf(buf, len, "auto");
        } else {
            snprintf(buf, len, "%d", *(const int *)f);
        }
        return;
    case CT_LOGLEVEL:
    case CT_ENUM:
        snprintf(buf, len, "%s", k->choices[*(const int *)f]);
        return;
    case CT_SIZE:
    case CT_DURATION:
        config_format_amount(buf, len, k->type, (int64_t) * (const uint64_t *)f);
        return;
    case CT_BOOL:
        snprintf(buf, len, "%s", *(const bool *)f ? "true" : "false");
        return;
    case CT_STRING:
    case CT_NAME:
        if (*(char *const *)f == NULL) {
            snprintf(buf, len, "(unset)");
        } else if (strstr(k->name, "password") != NULL) {
            snprintf(buf, len, "(secret)"); /* never in a log */
        } else {
            config_show(*(char *const *)f, buf, len);
        }
        return;
    case CT_ADDR:
    case CT_HOSTPORT:
        if (((const struct addr *)f)->host[0] == '\0') {
            snprintf(buf, len, "(unset)");
        } else {
            addr_format(f, a, sizeof(a));
            config_show(a, buf, len);
        }
        return;
    default:
        diff_list_text(k, cfg, buf, len);
        return;
    }
}

/* Copy the running value of scalar key k back into next. False if out of memory. */
static bool diff_keep(const struct config_key *k, const struct config *cur, struct config *next)
{
    const void *from = diff_field(cur, k);
    void *to = (char *)next + k->off;

    switch (k->type) {
    case CT_INT:
    case CT_WORKERS:
    case CT_LOGLEVEL:
    case CT_ENUM:
        *(int *)to = *(const int *)from;
        return true;
    case CT_SIZE:
    case CT_DURATION:
        *(uint64_t *)to = *(const uint64_t *)from;
        return true;
    case CT_BOOL:
        *(bool *)to = *(const bool *)from;
        return true;
    case CT_STRING:
    case CT_NAME: {
        const char *s = *(char *const *)from;
        char *copy = s != NULL ? strdup(s) : NULL;
        if (s != NULL && copy == NULL) {
            return false;
        }
        free(*(char **)to);
        *(char **)to = copy;
        return true;
    }
    case CT_ADDR:
    case CT_HOSTPORT:
        *(struct addr *)to = *(const struct addr *)from;
        return true;
    default:
        return false; /* lists always change live */
    }
}

int config_reconcile(const struct config *cur, struct config *next, config_change_fn *fn, void *ctx)
{
    char from[DIFF_TEXT_MAX], to[DIFF_TEXT_MAX];
    int changed = 0;

    for (size_t i = 0; i < config_key_count(); i++) {
        const struct config_key *k = config_key_at(i);
        bool same = config_is_list(k) ? diff_list_eq(k, cur, next)
                                      : diff_scalar_eq(k, diff_field(cur, k), diff_field(next, k));
        if (same) {
            continue;
        }
        diff_text(k, cur, from, sizeof(from));
        diff_text(k, next, to, sizeof(to));
        if (strcmp(from, to) == 0) {
            /* Only what the text leaves out changed: a secret, or a
             * listener's own TLS settings. */
            snprintf(to, sizeof(to), "(changed)");
        }
        if (!k->reload && !config_is_list(k)) {
            if (!diff_keep(k, cur, next)) {
                return -1;
            }
            fn(ctx, k->name, from, to, false);
        } else {
            fn(ctx, k->name, from, to, true);
        }
        changed++;
    }
    config_sync(next);
    return changed;
}

/*
 * load.c - the YAML loader: reads a file (or a string) through yamltree,
 * walks its mappings against the key table and applies each value with the
 * parsers of config.c, reporting errors as "FILE:LINE: KEY: problem".
 *
 * Unknown keys, duplicate keys and values of the wrong shape are refused
 * before anything is parsed; a list key from the file replaces the list. On
 * any error the struct stays consistent, so config_free is safe.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "conf/config_int.h"
#include "conf/yamltree.h"

#define CONFIG_FILE_MAX (1u << 20) /* bytes */
#define CONFIG_KEY_MAX  64         /* longer mapping keys cannot be ours */

/* ---- the YAML walk ------------------------------------------------------------ */

struct config_walk {
    struct config *cfg;
    const char *file;
    char *err;
    size_t errlen;
};

/* "FILE:LINE: KEY: problem" */
static bool __attribute__((format(printf, 4, 5)))
config_where(const struct config_walk *w, int line, const char *key, const char *fmt, ...)
{
    char msg[CONFIG_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(w->err, w->errlen, "%s:%d: %s: %s", w->file, line, key, msg);
    return false;
}

/* True when key i of a mapping already appeared before it. */
static bool config_seen_before(const struct yamltree_node *map, size_t i)
{
    for (size_t j = 0; j < i; j += 2) {
        if (strcmp(map->items[j]->text, map->items[i]->text) == 0) {
            return true;
        }
    }
    return false;
}

/* The full dotted name of a mapping key, made safe to print; false when the
 * key is too long to be one of ours. */
static bool config_full_name(const char *prefix, const char *key, char *buf, size_t len)
{
    char show[CONFIG_SHOW_MAX + 1];

    snprintf(buf, len, "%s%s", prefix, config_show(key, show, sizeof(show)));
    return strlen(key) <= CONFIG_KEY_MAX;
}

/*
 * Check an item mapping of a list (a listener, a replica) and pick out its
 * scalar fields: vals[i] is the value of names[i], or NULL when absent.
 */
static bool config_item_fields(const struct config_walk *w, const struct yamltree_node *map,
                               const char *list, const char *const *names,
                               const struct yamltree_node **vals, int map_field)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct yamltree_node *key = map->items[i], *v = map->items[i + 1];
        char prefix[32], full[CONFIG_KEY_MAX * 2];
        int f = -1;
        snprintf(prefix, sizeof(prefix), "%s.", list);
        if (config_full_name(prefix, key->text, full, sizeof(full))) {
            f = config_parse_enum(key->text, names);
        }
        if (f < 0) {
            return config_where(w, key->line, full, "unknown key");
        }
        if (vals[f] != NULL) {
            return config_where(w, key->line, full, "duplicate key");
        }
        if (f == map_field && v->kind == YAMLTREE_MAP) {
            vals[f] = v;
            continue;
        }
        if (v->kind != YAMLTREE_SCALAR || yamltree_is_null(v)) {
            return config_where(w, v->line, full, "expected a single value, got %s",
                                yamltree_is_null(v) ? "nothing" : yamltree_kind_name(v));
        }
        vals[f] = v;
    }
    return true;
}

/* A listener's own tls: mapping, complete on its own (unset keys take their
 * defaults, not the tls.* keys). */
static bool config_listen_tls(const struct config_walk *w, const struct yamltree_node *map,
                              struct tls_settings **out)
{
    static const char *const names[] = {"cert",      "key",     "ca",           "client-auth",
                                        "protocols", "ciphers", "ciphersuites", NULL};
    const struct yamltree_node *vals[CONFIG_TLS_FIELDS] = {NULL};
    struct tls_settings *t;
    char msg[CONFIG_ERR_MAX];

    if (!config_item_fields(w, map, "listen.tls", names, vals, -1)) {
        return false;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return config_where(w, map->line, "listen.tls", "out of memory");
    }
    for (size_t i = 0; i < CONFIG_TLS_FIELDS; i++) {
        const struct config_key *f = &config_item_keys[ITEM_TLS_FIELDS + i];
        const char *text = vals[i] != NULL ? vals[i]->text : f->def;
        if (text != NULL && !config_parse_scalar(f, text, (char *)t + f->off, msg, sizeof(msg))) {
            config_tls_free(t);
            return config_where(w, vals[i] != NULL ? vals[i]->line : map->line, f->name, "%s", msg);
        }
    }
    *out = t;
    return true;
}

static bool config_listen_item(const struct config_walk *w, const struct config_key *k,
                               const struct yamltree_node *item)
{
    static const char *const names[] = {"address", "read-from", "tls", NULL};
    const struct yamltree_node *vals[3] = {NULL, NULL, NULL};
    char msg[CONFIG_ERR_MAX];
    int read_from = -1;
    bool tls = false;
    struct tls_settings *own = NULL;

    if (item->kind == YAMLTREE_SCALAR) {
        if (!config_add_listener(w->cfg, item->text, -1, false, msg, sizeof(msg))) {
            return config_where(w, item->line, k->name, "%s", msg);
        }
        return true;
    }
    if (item->kind != YAMLTREE_MAP) {
        return config_where(w, item->line, k->name, "expected a list of addresses");
    }
    if (!config_item_fields(w, item, k->name, names, vals, 2)) {
        return false;
    }
    if (vals[0] == NULL) {
        return config_where(w, item->line, k->name, "a listener mapping needs an address");
    }
    if (vals[1] != NULL && !config_parse_scalar(&config_item_keys[ITEM_READ_FROM], vals[1]->text,
                                                &read_from, msg, sizeof(msg))) {
        return config_where(w, vals[1]->line, config_item_keys[ITEM_READ_FROM].name, "%s", msg);
    }
    if (vals[2] != NULL && vals[2]->kind == YAMLTREE_MAP) {
        if (!config_listen_tls(w, vals[2], &own)) {
            return false;
        }
        tls = true;
    } else if (vals[2] != NULL) {
        if (!config_parse_scalar(&config_item_keys[ITEM_TLS], vals[2]->text, &tls, msg,
                                 sizeof(msg))) {
            return config_where(w, vals[2]->line, config_item_keys[ITEM_TLS].name, "%s", msg);
        }
        if (!tls && strncmp(vals[0]->text, "tls://", 6) == 0) {
            return config_where(w, vals[2]->line, config_item_keys[ITEM_TLS].name,
                                "false, but the address says tls://");
        }
    }
    if (!config_add_listener(w->cfg, vals[0]->text, read_from, tls, msg, sizeof(msg))) {
        config_tls_free(own);
        return config_where(w, vals[0]->line, "listen.address", "%s", msg);
    }
    w->cfg->listeners[w->cfg->nlisteners - 1].tls_own = own;
    return true;
}

static bool config_replica_item(const struct config_walk *w, const struct config_key *k,
                                const struct yamltree_node *item)
{
    static const char *const names[] = {"address", "weight", "zone", NULL};
    const struct config_key *address = &config_item_keys[ITEM_ADDRESS];
    const struct yamltree_node *vals[3] = {NULL, NULL, NULL};
    struct config *cfg = w->cfg;
    struct config_replica_pref *rp;
    char msg[CONFIG_ERR_MAX], text[ADDR_TEXT_MAX];
    struct addr a;

    if (item->kind != YAMLTREE_MAP) {
        return config_where(w, item->line, k->name, "expected a list of mappings");
    }
    if (!config_item_fields(w, item, k->name, names, vals, -1)) {
        return false;
    }
    if (vals[0] == NULL) {
        return config_where(w, item->line, k->name, "a replica needs an address");
    }
    if (!config_parse_scalar(address, vals[0]->text, &a, msg, sizeof(msg))) {
        return config_where(w, vals[0]->line, address->name, "%s", msg);
    }
    /* Keyed by the canonical text, as the Sentinel code formats replicas. */
    addr_format(&a, text, sizeof(text));
    for (size_t i = 0; i < cfg->nreplica_prefs; i++) {
        if (strcmp(cfg->replica_prefs[i].address, text) == 0) {
            return config_where(w, vals[0]->line, address->name, "%s appears twice", text);
        }
    }
    if (!config_grow(k, (void **)&cfg->replica_prefs, cfg->nreplica_prefs, sizeof(*rp), msg,
                     sizeof(msg))) {
        return config_where(w, item->line, k->name, "%s", msg);
    }
    /* Counted at once, so that config_free releases what follows on any error. */
    rp = &cfg->replica_prefs[cfg->nreplica_prefs++];
    rp->weight = 1;
    if (!config_set_string(&rp->address, text, msg, sizeof(msg))) {
        return config_where(w, vals[0]->line, address->name, "%s", msg);
    }
    for (size_t i = 1; i < 3; i++) {
        const struct config_key *f = &config_item_keys[ITEM_ADDRESS + i];
        if (vals[i] != NULL &&
            !config_parse_scalar(f, vals[i]->text, (char *)rp + f->off, msg, sizeof(msg))) {
            return config_where(w, vals[i]->line, f->name, "%s", msg);
        }
    }
    return true;
}

static bool config_list_item(const struct config_walk *w, const struct config_key *k,
                             const struct yamltree_node *item)
{
    char msg[CONFIG_ERR_MAX];

    if (k->type == CT_LISTEN) {
        return config_listen_item(w, k, item);
    }
    if (k->type == CT_REPLICAS) {
        return config_replica_item(w, k, item);
    }
    if (item->kind != YAMLTREE_SCALAR) {
        return config_where(w, item->line, k->name, "expected a list of addresses");
    }
    if (!config_add_sentinel(w->cfg, k, item->text, msg, sizeof(msg))) {
        return config_where(w, item->line, k->name, "%s", msg);
    }
    return true;
}

/* A list key from the file replaces the list; null is an empty list, and a
 * single address stands for a list of one. */
static bool config_apply_list(const struct config_walk *w, const struct config_key *k,
                              const struct yamltree_node *v)
{
    config_clear_list(w->cfg, k);
    if (yamltree_is_null(v)) {
        return true;
    }
    if (v->kind == YAMLTREE_SCALAR && k->type != CT_REPLICAS) {
        return config_list_item(w, k, v);
    }
    if (v->kind != YAMLTREE_SEQ) {
        return config_where(w, v->line, k->name, "expected a list of %s",
                            k->type == CT_REPLICAS ? "mappings" : "addresses");
    }
    for (size_t i = 0; i < v->n; i++) {
        if (!config_list_item(w, k, v->items[i])) {
            return false;
        }
    }
    return true;
}

static bool config_apply(const struct config_walk *w, const struct config_key *k,
                         const struct yamltree_node *v)
{
    char msg[CONFIG_ERR_MAX];

    if (config_is_list(k)) {
        return config_apply_list(w, k, v);
    }
    if (v->kind != YAMLTREE_SCALAR) {
        return config_where(w, v->line, k->name, "expected a single value, got %s",
                            yamltree_kind_name(v));
    }
    if (yamltree_is_null(v)) {
        return config_where(w, v->line, k->name, "missing value");
    }
    if (!config_parse_scalar(k, v->text, (char *)w->cfg + k->off, msg, sizeof(msg))) {
        return config_where(w, v->line, k->name, "%s", msg);
    }
    return true;
}

static bool config_walk_map(const struct config_walk *w, const struct yamltree_node *map,
                            const char *prefix);

/* A section's value: a mapping of its keys, or null for none. */
static bool config_walk_section(const struct config_walk *w, const char *name,
                                const struct yamltree_node *v)
{
    char prefix[CONFIG_KEY_MAX * 2 + 1];

    if (yamltree_is_null(v)) {
        return true;
    }
    if (v->kind != YAMLTREE_MAP) {
        return config_where(w, v->line, name, "expected a mapping, got %s", yamltree_kind_name(v));
    }
    snprintf(prefix, sizeof(prefix), "%s.", name);
    return config_walk_map(w, v, prefix);
}

/* Walk a mapping of keys (the top level or a section such as "sentinel."). */
static bool config_walk_map(const struct config_walk *w, const struct yamltree_node *map,
                            const char *prefix)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct yamltree_node *key = map->items[i], *v = map->items[i + 1];
        char full[CONFIG_KEY_MAX * 2];
        const struct config_key *k = NULL;
        bool section = false;
        bool named = config_full_name(prefix, key->text, full, sizeof(full));
        if (key->text != NULL && strchr(key->text, '.') != NULL) {
            /* Dotted names are the command line's; in a file they would get
             * past the duplicate check ("sentinel.x" next to "sentinel: {x}"). */
            return config_where(w, key->line, full, "dotted key: write it nested in the file");
        }
        if (named) {
            k = config_find(full);
            section = k == NULL && config_is_section(full);
        }
        if (k == NULL && !section) {
            return config_where(w, key->line, full, "unknown key");
        }
        /* Earlier keys are all known and distinct, so this scan stays short. */
        if (config_seen_before(map, i)) {
            return config_where(w, key->line, full, "duplicate key");
        }
        if (k != NULL ? !config_apply(w, k, v) : !config_walk_section(w, full, v)) {
            return false;
        }
    }
    return true;
}

/* ---- loading ------------------------------------------------------------------ */

bool config_load_string(struct config *cfg, const char *yaml, size_t len, const char *name,
                        char *err, size_t errlen)
{
    struct config_walk w = {cfg, name != NULL ? name : "(config)", err, errlen};
    char msg[CONFIG_ERR_MAX];
    struct yamltree_node *root;
    int line;
    bool ok;

    if (len > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes", w.file, CONFIG_FILE_MAX);
        return false;
    }
    root = yamltree_parse(yaml, len, &line, msg, sizeof(msg));
    if (root == NULL) {
        snprintf(err, errlen, "%s:%d: %s", w.file, line > 0 ? line : 1, msg);
        return false;
    }
    if (root->kind != YAMLTREE_MAP) {
        snprintf(err, errlen, "%s:%d: the top level must be a mapping of keys, not %s", w.file,
                 root->line, root->kind == YAMLTREE_SEQ ? "a list" : "a single value");
        yamltree_free(root);
        return false;
    }
    ok = config_walk_map(&w, root, "");
    yamltree_free(root);
    config_sync(cfg);
    if (ok && !config_set_string(&cfg->source, w.file, msg, sizeof(msg))) {
        snprintf(err, errlen, "%s: %s", w.file, msg);
        return false;
    }
    return ok;
}

bool config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len;
    bool ok;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    /* One byte more than allowed, so that a file too large is noticed. */
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return false;
    }
    len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        ok = false;
    } else {
        ok = config_load_string(cfg, buf, len, path, err, errlen);
    }
    fclose(f);
    free(buf);
    return ok;
}

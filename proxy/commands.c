/*
 * commands.c - the command table: built-in data, the proxy's own treatment of
 * session-changing commands, and lookup by name.
 *
 * Lookup is on the hot path (once per request): names are folded to lower
 * case into a small stack buffer and found in an open-addressing hash table
 * sized to a power of two at most half full.
 */
#include "proxy/commands.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/resp.h"

#define CMD(n, a, f, fk, lk, ks) {n, a, f, fk, lk, ks, CMDP_FORWARD, CMD_OTHER, false},

static const struct cmd_info commands_data[] = {
#include "proxy/commands_data.inc"
};

#undef CMD

/* Commands whose handling differs from plain forwarding, by name. */
struct cmd_override {
    const char *name;
    enum cmd_proxy proxy : 8;
    enum cmd_id id : 8;
};

static const struct cmd_override commands_overrides[] = {
    {"auth", CMDP_SESSION, CMD_AUTH},
    {"blmove", CMDP_BLOCKING, CMD_OTHER},
    {"blmpop", CMDP_BLOCKING, CMD_OTHER},
    {"blpop", CMDP_BLOCKING, CMD_OTHER},
    {"brpop", CMDP_BLOCKING, CMD_OTHER},
    {"brpoplpush", CMDP_BLOCKING, CMD_OTHER},
    {"bzmpop", CMDP_BLOCKING, CMD_OTHER},
    {"bzpopmax", CMDP_BLOCKING, CMD_OTHER},
    {"bzpopmin", CMDP_BLOCKING, CMD_OTHER},
    {"client", CMDP_FORWARD, CMD_CLIENT},
    {"client|caching", CMDP_SESSION, CMD_CLIENT},
    {"client|getname", CMDP_LOCAL, CMD_CLIENT},
    {"client|id", CMDP_SESSION, CMD_CLIENT},
    {"client|no-evict", CMDP_SESSION, CMD_CLIENT},
    {"client|no-touch", CMDP_SESSION, CMD_CLIENT},
    {"client|reply", CMDP_STREAM, CMD_CLIENT},
    {"client|setinfo", CMDP_FORWARD, CMD_CLIENT},
    {"client|setname", CMDP_LOCAL, CMD_CLIENT},
    {"client|tracking", CMDP_SESSION, CMD_CLIENT},
    {"discard", CMDP_FORWARD, CMD_DISCARD},
    {"exec", CMDP_FORWARD, CMD_EXEC},
    {"hello", CMDP_SESSION, CMD_HELLO},
    {"host:", CMDP_CLOSE, CMD_OTHER},
    {"monitor", CMDP_STREAM, CMD_MONITOR},
    {"multi", CMDP_SESSION, CMD_MULTI},
    {"function|kill", CMDP_BLOCKING, CMD_OTHER},
    {"hscan", CMDP_FORWARD, CMD_XSCAN},
    {"ping", CMDP_FORWARD, CMD_PING},
    {"post", CMDP_CLOSE, CMD_OTHER},
    {"proxy", CMDP_LOCAL, CMD_PROXY},
    {"psubscribe", CMDP_STREAM, CMD_PSUBSCRIBE},
    {"psync", CMDP_REFUSE, CMD_OTHER},
    {"punsubscribe", CMDP_FORWARD, CMD_PUNSUBSCRIBE},
    {"quit", CMDP_LOCAL, CMD_QUIT},
    {"replconf", CMDP_REFUSE, CMD_OTHER},
    {"reset", CMDP_LOCAL, CMD_RESET},
    {"scan", CMDP_FORWARD, CMD_SCAN},
    {"script|kill", CMDP_BLOCKING, CMD_OTHER},
    {"select", CMDP_SESSION, CMD_SELECT},
    {"shutdown", CMDP_BLOCKING, CMD_OTHER},
    {"sscan", CMDP_FORWARD, CMD_XSCAN},
    {"ssubscribe", CMDP_STREAM, CMD_SSUBSCRIBE},
    {"subscribe", CMDP_STREAM, CMD_SUBSCRIBE},
    {"sunsubscribe", CMDP_FORWARD, CMD_SUNSUBSCRIBE},
    {"sync", CMDP_REFUSE, CMD_OTHER},
    {"unsubscribe", CMDP_FORWARD, CMD_UNSUBSCRIBE},
    {"unwatch", CMDP_FORWARD, CMD_UNWATCH},
    {"wait", CMDP_BLOCKING, CMD_WAIT},
    {"waitaof", CMDP_BLOCKING, CMD_WAIT},
    {"watch", CMDP_SESSION, CMD_WATCH},
    {"xread", CMDP_FORWARD, CMD_XREAD},
    {"xreadgroup", CMDP_FORWARD, CMD_XREADGROUP},
    {"zscan", CMDP_FORWARD, CMD_XSCAN},
};

/* Commands not in every Redis version's COMMAND output that the proxy must
 * still recognise (the proxy's own, HTTP probes, newer sub-commands). */
static const struct cmd_info commands_extra[] = {
    {"proxy", -2, CMDF_LOADING | CMDF_STALE, 0, 0, 0, CMDP_LOCAL, CMD_PROXY, false},
    {"post", -1, 0, 0, 0, 0, CMDP_CLOSE, CMD_OTHER, false},
    {"host:", -1, 0, 0, 0, 0, CMDP_CLOSE, CMD_OTHER, false},
    {"client|no-touch", 3, CMDF_NOSCRIPT | CMDF_LOADING | CMDF_STALE, 0, 0, 0, CMDP_SESSION,
     CMD_CLIENT, false},
    {"client|setinfo", -4, CMDF_NOSCRIPT | CMDF_LOADING | CMDF_STALE, 0, 0, 0, CMDP_FORWARD,
     CMD_CLIENT, false},
    {"waitaof", 4, CMDF_NOSCRIPT, 0, 0, 0, CMDP_BLOCKING, CMD_WAIT, false},
};

struct cmdtable {
    struct cmd_info *entries;
    size_t n, cap;
    uint32_t *lens;  /* strlen of each entry's name */
    uint32_t *slots; /* index + 1 into entries; 0 = empty */
    uint32_t mask;
    char *names; /* storage of the names of a table read from a server */
    bool from_server;
};

#define COMMANDS_FNV_BASIS 2166136261u

/* One byte into an FNV-1a hash. */
static inline uint32_t commands_hash_byte(uint32_t h, char ch)
{
    return (h ^ (uint8_t)ch) * 16777619u;
}

static uint32_t commands_hash(const char *s, size_t len)
{
    uint32_t h = COMMANDS_FNV_BASIS;

    for (size_t i = 0; i < len; i++) {
        h = commands_hash_byte(h, s[i]);
    }
    return h;
}

static const struct cmd_override *commands_override(const char *name)
{
    for (size_t i = 0; i < sizeof(commands_overrides) / sizeof(commands_overrides[0]); i++) {
        if (strcmp(commands_overrides[i].name, name) == 0) {
            return &commands_overrides[i];
        }
    }
    return NULL;
}

/* The entry named lname (lower case, len bytes, hash h), or NULL. */
static const struct cmd_info *commands_probe(const struct cmdtable *t, const char *lname,
                                             size_t len, uint32_t h)
{
    uint32_t i = h & t->mask;

    while (t->slots[i] != 0) {
        uint32_t k = t->slots[i] - 1;
        if (t->lens[k] == len && memcmp(t->entries[k].name, lname, len) == 0) {
            return &t->entries[k];
        }
        i = (i + 1) & t->mask;
    }
    return NULL;
}

static void commands_insert(struct cmdtable *t, const struct cmd_info *src)
{
    const struct cmd_override *ov = commands_override(src->name);
    size_t len = strlen(src->name);
    uint32_t h = commands_hash(src->name, len);
    const struct cmd_info *dup = commands_probe(t, src->name, len, h);
    struct cmd_info *ci;
    uint32_t i;

    if (dup != NULL || t->n >= t->cap || len > UINT32_MAX) {
        return;
    }
    t->lens[t->n] = (uint32_t)len;
    ci = &t->entries[t->n];
    *ci = *src;
    if (ov != NULL) {
        ci->proxy = ov->proxy;
        ci->id = ov->id;
    } else if (ci->flags & CMDF_BLOCKING) {
        ci->proxy = CMDP_BLOCKING; /* a module's blocking command */
    }
    i = h & t->mask;
    while (t->slots[i] != 0) {
        i = (i + 1) & t->mask;
    }
    t->slots[i] = (uint32_t)(t->n + 1);
    t->n++;
}

static void commands_mark_containers(struct cmdtable *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const char *bar = strchr(t->entries[i].name, '|');
        struct cmd_info *parent;
        if (bar == NULL) {
            continue;
        }
        size_t len = (size_t)(bar - t->entries[i].name);
        parent = (struct cmd_info *)commands_probe(t, t->entries[i].name, len,
                                                   commands_hash(t->entries[i].name, len));
        if (parent != NULL) {
            parent->has_subs = true;
        }
    }
}

/* An empty table with room for total entries; NULL if out of memory. */
static struct cmdtable *commands_alloc(size_t total)
{
    struct cmdtable *t = calloc(1, sizeof(*t));
    uint32_t size = 64;

    while (size < total * 2) {
        size *= 2;
    }
    if (t == NULL) {
        return NULL;
    }
    t->entries = calloc(total, sizeof(*t->entries));
    t->lens = calloc(total, sizeof(*t->lens));
    t->slots = calloc(size, sizeof(*t->slots));
    if (t->entries == NULL || t->lens == NULL || t->slots == NULL) {
        cmdtable_free(t);
        return NULL;
    }
    t->cap = total;
    t->mask = size - 1;
    return t;
}

void cmdtable_free(struct cmdtable *t)
{
    if (t == NULL) {
        return;
    }
    free(t->entries);
    free(t->lens);
    free(t->slots);
    free(t->names);
    free(t);
}

bool cmdtable_same(const struct cmdtable *a, const struct cmdtable *b)
{
    if (a == NULL || b == NULL || a->n != b->n || a->from_server != b->from_server) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct cmd_info *x = &a->entries[i];
        const struct cmd_info *y = cmdtable_lookup(b, x->name, strlen(x->name));
        if (y == NULL || x->arity != y->arity || x->flags != y->flags ||
            x->first_key != y->first_key || x->last_key != y->last_key ||
            x->key_step != y->key_step || x->proxy != y->proxy || x->id != y->id ||
            x->has_subs != y->has_subs) {
            return false;
        }
    }
    return true;
}

static struct cmdtable *commands_builtin_table;
static pthread_once_t commands_once = PTHREAD_ONCE_INIT;

static void commands_build_builtin(void)
{
    size_t ndata = sizeof(commands_data) / sizeof(commands_data[0]);
    size_t nextra = sizeof(commands_extra) / sizeof(commands_extra[0]);
    struct cmdtable *t = commands_alloc(ndata + nextra);

    if (t == NULL) {
        abort();
    }
    for (size_t i = 0; i < ndata; i++) {
        commands_insert(t, &commands_data[i]);
    }
    for (size_t i = 0; i < nextra; i++) {
        commands_insert(t, &commands_extra[i]);
    }
    commands_mark_containers(t);
    commands_builtin_table = t;
}

/* ---- a table from a server's COMMAND reply ---------------------------------- */

static const struct {
    const char *name;
    uint32_t flag;
} commands_flag_names[] = {
    {"write", CMDF_WRITE},
    {"readonly", CMDF_READONLY},
    {"denyoom", CMDF_DENYOOM},
    {"admin", CMDF_ADMIN},
    {"pubsub", CMDF_PUBSUB},
    {"noscript", CMDF_NOSCRIPT},
    {"blocking", CMDF_BLOCKING},
    {"loading", CMDF_LOADING},
    {"stale", CMDF_STALE},
    {"fast", CMDF_FAST},
    {"movablekeys", CMDF_MOVABLEKEYS},
    {"may_replicate", CMDF_MAY_REPLICATE},
    {"no_multi", CMDF_NO_MULTI},
    {"no_auth", CMDF_NO_AUTH},
};

struct commands_parse {
    struct resp_reader rd;
    struct cmd_info *tmp; /* entries parsed, names pointing into names */
    size_t n, cap;
    char *names;
    size_t names_len, names_cap;
};

static bool commands_add_name(struct commands_parse *p, const char *s, size_t len, size_t *off)
{
    if (p->names_len + len + 1 > p->names_cap) {
        size_t cap = p->names_cap ? p->names_cap * 2 : 8192;
        char *n;
        while (cap < p->names_len + len + 1) {
            cap *= 2;
        }
        n = realloc(p->names, cap);
        if (n == NULL) {
            return false;
        }
        p->names = n;
        p->names_cap = cap;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        p->names[p->names_len + i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    p->names[p->names_len + len] = '\0';
    *off = p->names_len;
    p->names_len += len + 1;
    return true;
}

static bool commands_parse_entry(struct commands_parse *p, int depth);

/* One entry: [name, arity, [flags], first, last, step, acl, tips, keyspecs,
 * [subcommands]] (Redis 7; older servers stop after step or acl). */
static bool commands_parse_entry(struct commands_parse *p, int depth)
{
    struct resp_value v, name;
    struct cmd_info ci;
    int64_t n, num;
    size_t off;

    memset(&ci, 0, sizeof(ci));
    if (depth > 2 || !resp_next(&p->rd, &v) || v.type != '*' || v.n < 6) {
        return false;
    }
    n = v.n;
    if (!resp_next(&p->rd, &name) || name.s == NULL || name.len == 0 || name.len >= 64 ||
        !commands_add_name(p, name.s, name.len, &off)) {
        return false;
    }
    if (!resp_next(&p->rd, &v) || !resp_int(&v, &num)) {
        return false;
    }
    ci.arity = (int)num;
    if (!resp_next(&p->rd, &v) || (v.type != '*' && v.type != '~')) {
        return false;
    }
    for (int64_t i = v.n; i > 0; i--) {
        struct resp_value f;
        if (!resp_next(&p->rd, &f)) {
            return false;
        }
        for (size_t k = 0; k < sizeof(commands_flag_names) / sizeof(commands_flag_names[0]); k++) {
            ci.flags |= resp_is(&f, commands_flag_names[k].name) ? commands_flag_names[k].flag : 0;
        }
    }
    for (int k = 0; k < 3; k++) {
        if (!resp_next(&p->rd, &v) || !resp_int(&v, &num)) {
            return false;
        }
        *(k == 0 ? &ci.first_key : k == 1 ? &ci.last_key : &ci.key_step) = (int)num;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 512;
        struct cmd_info *t = realloc(p->tmp, cap * sizeof(*t));
        if (t == NULL) {
            return false;
        }
        p->tmp = t;
        p->cap = cap;
    }
    ci.name = (const char *)(uintptr_t)off; /* an offset until names stops moving */
    p->tmp[p->n++] = ci;
    for (int64_t i = 6; i < n; i++) {
        if (i == 9) {
            if (!resp_next(&p->rd, &v) || v.type != '*') {
                return false;
            }
            for (int64_t k = v.n; k > 0; k--) {
                if (!commands_parse_entry(p, depth + 1)) {
                    return false;
                }
            }
        } else if (!resp_skip(&p->rd)) {
            return false;
        }
    }
    return true;
}

struct cmdtable *cmdtable_from_reply(const char *buf, size_t len)
{
    size_t nextra = sizeof(commands_extra) / sizeof(commands_extra[0]);
    struct commands_parse p;
    struct cmdtable *t = NULL;
    struct resp_value v;
    bool ok = true;

    memset(&p, 0, sizeof(p));
    resp_reader_init(&p.rd, buf, len);
    if (!resp_next(&p.rd, &v) || v.type != '*' || v.n <= 0) {
        return NULL;
    }
    for (int64_t i = v.n; i > 0 && ok; i--) {
        ok = commands_parse_entry(&p, 0);
    }
    if (ok) {
        t = commands_alloc(p.n + nextra);
    }
    if (t != NULL) {
        t->names = p.names;
        p.names = NULL;
        t->from_server = true;
        for (size_t i = 0; i < p.n; i++) {
            p.tmp[i].name = t->names + (uintptr_t)p.tmp[i].name;
            commands_insert(t, &p.tmp[i]);
        }
        for (size_t i = 0; i < nextra; i++) {
            commands_insert(t, &commands_extra[i]);
        }
        commands_mark_containers(t);
    }
    free(p.tmp);
    free(p.names);
    return t;
}

bool cmdtable_from_server(const struct cmdtable *t)
{
    return t->from_server;
}

const struct cmdtable *cmdtable_builtin(void)
{
    pthread_once(&commands_once, commands_build_builtin);
    return commands_builtin_table;
}

const struct cmd_info *cmdtable_lookup(const struct cmdtable *t, const char *name, size_t len)
{
    char lname[64];
    uint32_t h = COMMANDS_FNV_BASIS;

    if (len == 0 || len >= sizeof(lname)) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) { /* lower case and hash in one pass */
        char ch = name[i];
        ch = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        lname[i] = ch;
        h = commands_hash_byte(h, ch);
    }
    return commands_probe(t, lname, len, h);
}

const struct cmd_info *cmdtable_find(const struct cmdtable *t, const char *name, size_t nlen,
                                     const char *arg1, size_t alen)
{
    const struct cmd_info *ci = cmdtable_lookup(t, name, nlen);
    const struct cmd_info *sub;
    char full[64];

    if (ci == NULL || !ci->has_subs || arg1 == NULL || alen == 0) {
        return ci;
    }
    if (nlen + 1 + alen >= sizeof(full)) {
        return ci;
    }
    memcpy(full, name, nlen);
    full[nlen] = '|';
    memcpy(full + nlen + 1, arg1, alen);
    sub = cmdtable_lookup(t, full, nlen + 1 + alen);
    return sub != NULL ? sub : ci;
}

size_t cmdtable_size(const struct cmdtable *t)
{
    return t->n;
}

/*
 * config_int.h - internal to conf/: what the YAML loader (load.c) shares with
 * the configuration table and value parsing (config.c). Not for use outside
 * conf/; the rest of the program goes through conf/config.h.
 *
 * The functions taking msg and len report a failure by writing a message
 * (without file, line or key, which the caller adds) there and returning
 * false; they leave struct config consistent, so config_free stays safe.
 */
#ifndef SP_CONFIG_INT_H
#define SP_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"

#define CONFIG_SHOW_MAX 64 /* bytes of a value quoted in a message */

enum config_type {
    CT_INT,      /* decimal integer (int) */
    CT_WORKERS,  /* integer or "auto" (0) */
    CT_SIZE,     /* bytes, with an optional unit (uint64_t) */
    CT_DURATION, /* milliseconds, with an optional unit (uint64_t) */
    CT_BOOL,
    CT_STRING,   /* any non-empty text */
    CT_NAME,     /* min..max bytes, no whitespace or control characters */
    CT_ADDR,     /* HOST:PORT, [IPv6]:PORT or unix:/path (struct addr) */
    CT_HOSTPORT, /* HOST:PORT or [IPv6]:PORT only */
    CT_LOGLEVEL, /* enum log_level, through log_level_parse() */
    CT_ENUM,     /* one of choices; the index is the value */
    CT_LISTEN,   /* list of listeners */
    CT_ADDRLIST, /* list of addresses */
    CT_REPLICAS, /* list of replica preferences */
};

struct config_key {
    const char *name;           /* dotted path */
    enum config_type type;      /* how the text is parsed */
    size_t off;                 /* the field in struct config (or in an item) */
    const char *def;            /* NULL: unset; lists: filled in by config_validate when empty */
    int64_t min, max;           /* numbers: bounds; names: length; lists: max items */
    const char *const *choices; /* CT_ENUM and CT_LOGLEVEL: the names, NULL-terminated */
    bool reload;                /* could change without a restart */
    const char *doc;
};

/* Fields of list items, described like keys so that they are parsed, bounded
 * and reported the same way (offsets are into the item); indexed by ITEM_*. */
enum {
    ITEM_READ_FROM,
    ITEM_ADDRESS,
    ITEM_WEIGHT,
    ITEM_ZONE,
    ITEM_TLS,
    ITEM_TLS_FIELDS, /* listen.tls.cert ... (CONFIG_TLS_FIELDS of them) */
};
#define CONFIG_TLS_FIELDS 7
extern const struct config_key config_item_keys[];

/* Key i of the table (i < config_key_count()), or NULL. */
const struct config_key *config_key_at(size_t i);

/* Write an amount of type CT_SIZE or CT_DURATION in the largest unit that
 * divides it exactly ("64mb", "5m"). */
void config_format_amount(char *buf, size_t len, enum config_type type, int64_t v);

/* The key with this full dotted name, or NULL. */
const struct config_key *config_find(const char *name);

/* True when name is a section such as "sentinel" (a prefix of dotted keys). */
bool config_is_section(const char *name);

/* True for the list-typed keys (listen, sentinel.addresses, replicas). */
bool config_is_list(const struct config_key *k);

/* s made safe to quote in a message (cut short, control characters masked), in buf. */
const char *config_show(const char *s, char *buf, size_t len);

/* The index of s in the NULL-terminated names, or -1. */
int config_parse_enum(const char *s, const char *const *names);

/* Parse the text of a scalar-typed key into dst, the field it describes. */
bool config_parse_scalar(const struct config_key *k, const char *s, void *dst, char *msg,
                         size_t len);

/* Replace the string at *dst with a copy of s. */
bool config_set_string(char **dst, const char *s, char *msg, size_t len);

/* Make room for one more zeroed item at the end of *arr (n items now), within k's cap. */
bool config_grow(const struct config_key *k, void **arr, size_t n, size_t size, char *msg,
                 size_t len);

/* Append a listener at text (read_from -1: the global read-from; TLS when tls is
 * set or text starts with tls://) to cfg->listeners. */
bool config_add_listener(struct config *cfg, const char *text, int read_from, bool tls, char *msg,
                         size_t len);

/* Append the address text to cfg->sentinels, within k's cap. */
bool config_add_sentinel(struct config *cfg, const struct config_key *k, const char *text,
                         char *msg, size_t len);

/* Empty the list that k describes, freeing what its items own. */
void config_clear_list(struct config *cfg, const struct config_key *k);

/* Free a listener's own TLS settings (NULL is fine). */
void config_tls_free(struct tls_settings *t);

/* Set has_backend and has_sentinel from the values, whichever way they were set. */
void config_sync(struct config *cfg);

#endif

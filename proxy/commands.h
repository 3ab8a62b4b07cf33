/*
 * commands.h - what the proxy knows about each Redis command: arity, flags
 * (write, read-only, blocking, pub/sub, ...), key positions, and how the proxy
 * must treat it (forward on a shared connection, move the session to a
 * dedicated connection, answer it itself, or refuse it).
 *
 * A table is immutable once built and may be shared between threads. The
 * built-in one comes from commands_data.inc (generated from redis-server's
 * COMMAND reply); the control plane can build a newer one from the master's
 * COMMAND reply and publish it to the workers.
 */
#ifndef SP_COMMANDS_H
#define SP_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Flags as Redis reports them in COMMAND. */
enum {
    CMDF_WRITE = 1u << 0,
    CMDF_READONLY = 1u << 1,
    CMDF_DENYOOM = 1u << 2,
    CMDF_ADMIN = 1u << 3,
    CMDF_PUBSUB = 1u << 4,
    CMDF_NOSCRIPT = 1u << 5,
    CMDF_BLOCKING = 1u << 6,
    CMDF_LOADING = 1u << 7,
    CMDF_STALE = 1u << 8,
    CMDF_FAST = 1u << 9,
    CMDF_MOVABLEKEYS = 1u << 10,
    CMDF_MAY_REPLICATE = 1u << 11,
    CMDF_NO_MULTI = 1u << 12,
    CMDF_NO_AUTH = 1u << 13,
};

/* How the proxy handles a command (one value per command). */
enum cmd_proxy {
    CMDP_FORWARD = 0, /* any connection, reply matched in order */
    CMDP_BLOCKING,    /* may block: a dedicated connection for its duration */
    CMDP_SESSION,     /* changes server-side session state: dedicated connection */
    CMDP_STREAM,      /* replies stop matching requests 1:1 (SUBSCRIBE, MONITOR, CLIENT REPLY) */
    CMDP_LOCAL,       /* answered by the proxy */
    CMDP_REFUSE,      /* refused with an error (would break a shared connection) */
    CMDP_CLOSE,       /* close the client at once (HTTP "POST"/"Host:" probes) */
};

/* Identifiers of the commands the proxy treats specially. */
enum cmd_id {
    CMD_OTHER = 0,
    CMD_AUTH,
    CMD_CLIENT,
    CMD_DISCARD,
    CMD_EXEC,
    CMD_HELLO,
    CMD_MONITOR,
    CMD_MULTI,
    CMD_PROXY,
    CMD_PSUBSCRIBE,
    CMD_PUNSUBSCRIBE,
    CMD_QUIT,
    CMD_RESET,
    CMD_SELECT,
    CMD_SSUBSCRIBE,
    CMD_SUBSCRIBE,
    CMD_SUNSUBSCRIBE,
    CMD_UNSUBSCRIBE,
    CMD_UNWATCH,
    CMD_WATCH,
    CMD_XREAD,
    CMD_XREADGROUP,
    CMD_WAIT,
    CMD_PING,
    CMD_SCAN,  /* SCAN: cursor in argument 1 */
    CMD_XSCAN, /* HSCAN, SSCAN, ZSCAN: cursor in argument 2 */
};

struct cmd_info {
    const char *name; /* lower case; "container|sub" for sub-commands */
    int arity;        /* Redis convention: -N means at least N */
    uint32_t flags;   /* CMDF_* */
    int first_key, last_key, key_step;
    enum cmd_proxy proxy : 8;
    enum cmd_id id : 8;
    bool has_subs; /* a container such as CLIENT or CONFIG */
};

struct cmdtable;

/* The table compiled into the binary (built once, never freed). */
const struct cmdtable *cmdtable_builtin(void);

/* Look a command up by name (any case; sub-commands as "client|setname").
 * NULL when unknown. */
const struct cmd_info *cmdtable_lookup(const struct cmdtable *t, const char *name, size_t len);

/* Look up a command and, for containers, its sub-command (arg1 may be NULL).
 * Falls back to the container when the sub-command is unknown. */
const struct cmd_info *cmdtable_find(const struct cmdtable *t, const char *name, size_t nlen,
                                     const char *arg1, size_t alen);

/* Number of entries. */
size_t cmdtable_size(const struct cmdtable *t);

/* Build a table from a server's COMMAND reply (the whole reply, as sent), with
 * the proxy's treatment of known commands applied; NULL if it cannot be
 * parsed or memory ran out. */
struct cmdtable *cmdtable_from_reply(const char *buf, size_t len);

/* True for a table built from a server's reply. */
bool cmdtable_from_server(const struct cmdtable *t);

/* True when both tables hold the same commands with the same properties
 * (a new master of the same version; servers list them in any order). */
bool cmdtable_same(const struct cmdtable *a, const struct cmdtable *b);

/* Free a table from cmdtable_from_reply (never the built-in one). */
void cmdtable_free(struct cmdtable *t);

/* True for a command whose reply the proxy may safely get again from another
 * node (read-only, no side effects). */
static inline bool cmd_is_read(const struct cmd_info *ci)
{
    return ci != NULL && (ci->flags & CMDF_READONLY) && !(ci->flags & CMDF_WRITE);
}

#endif

/*
 * events.c - the Sentinels' pub/sub events.
 *
 * Every Sentinel's event channels are subscribed. An event about our master
 * starts a round at once; the signals that the master is going away
 * (objectively down, a failover starting, a switch announced) also put
 * writes on hold immediately, so that nothing more is written to a master
 * that is being replaced. Messages can be lost, so this only ever speeds up
 * what polling would find anyway.
 */
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/topology.h"
#include "sentinel/engine_int.h"

/* Events that stop writes to the master they name. */
static const char *const events_going_away[] = {
    "+odown",
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+switch-master",
};

/* Events that only change the picture (replica health, Sentinels). */
static const char *const events_changes[] = {
    "+sdown",
    "-sdown",
    "-odown",
    "+slave",
    "+convert-to-slave",
    "+reboot",
    "-slave-restart-as-slave",
    "+slave-reconf-done",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+config-update-from",
    "+sentinel",
    "+fix-slave-config",
};

#define EVENTS_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define EVENTS_WORDS    8

void events_subscribe(struct engine_node *n)
{
    const char *argv[1 + EVENTS_COUNT(events_going_away) + EVENTS_COUNT(events_changes)];
    size_t argl[EVENTS_COUNT(argv)];
    int argc = 0;

    if (link_active(n->sub)) {
        return;
    }
    n->subscribed = false;
    argv[argc++] = "SUBSCRIBE";
    for (size_t i = 0; i < EVENTS_COUNT(events_going_away); i++) {
        argv[argc++] = events_going_away[i];
    }
    for (size_t i = 0; i < EVENTS_COUNT(events_changes); i++) {
        argv[argc++] = events_changes[i];
    }
    for (int i = 0; i < argc; i++) {
        argl[i] = strlen(argv[i]);
    }
    link_command(n->sub, NULL, NULL, argc, argv, argl);
}

static bool events_in(const char *const *list, size_t n, const char *channel)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], channel) == 0) {
            return true;
        }
    }
    return false;
}

/* Split a payload into at most EVENTS_WORDS space-separated words (in place). */
static int events_words(char *p, char **w)
{
    int n = 0;

    while (*p != '\0' && n < EVENTS_WORDS) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        w[n++] = p;
        while (*p != '\0' && *p != ' ') {
            p++;
        }
        if (*p == ' ') {
            *p++ = '\0';
        }
    }
    return n;
}

/* The master an event is about, by name and (old) address:
 * "+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>",
 * "master <name> <ip> <port>" for events about a master, and
 * "<type> <name> <ip> <port> @ <master> <ip> <port>" for other instances.
 * *ip and *port point into w, or stay NULL. */
static const char *events_master_of(const char *channel, char **w, int n, const char **ip,
                                    const char **port)
{
    int at = -1;

    if (strcmp(channel, "+switch-master") == 0) {
        at = 0;
    } else if (n >= 2 && strcmp(w[0], "master") == 0) {
        at = 1;
    } else {
        for (int i = 0; i + 1 < n; i++) {
            if (strcmp(w[i], "@") == 0) {
                at = i + 1;
            }
        }
    }
    if (at < 0 || at >= n) {
        return NULL;
    }
    if (at + 2 < n) {
        *ip = w[at + 1];
        *port = w[at + 2];
    }
    return w[at];
}

/* True when the event names the master writes go to now. */
static bool events_is_current(const struct engine *e, const char *ip, const char *port)
{
    const struct topology *t = e->topo;

    return t != NULL && t->has_master && ip != NULL && port != NULL &&
           strcmp(t->master.host, ip) == 0 && t->master.port == atoi(port);
}

static void events_handle(struct engine_node *node, const char *channel, const char *payload)
{
    struct engine *e = node->e;
    char *copy = strdup(payload), *w[EVENTS_WORDS];
    const char *master, *ip = NULL, *port = NULL;
    bool going;
    int n;

    if (copy == NULL) {
        return;
    }
    n = events_words(copy, w);
    master = events_master_of(channel, w, n, &ip, &port);
    if (master != NULL && strcmp(master, e->cfg->master_name) != 0) {
        free(copy);
        return; /* another master's business */
    }
    /* Only news about the master in use stops writes (a Sentinel that
     * announces a switch already applied changes nothing). */
    going = events_in(events_going_away, EVENTS_COUNT(events_going_away), channel) &&
            master != NULL && events_is_current(e, ip, port);
    if (going && ev_now(e->loop) < node->mute_until) {
        /* Its last alarm was false: polling finds a real one anyway. */
        log_debug("Sentinel %s: %s %s (ignored: a false alarm less than %.0f s ago)", node->name,
                  channel, payload, node->mute_for);
        free(copy);
        return;
    }
    log_info("Sentinel %s: %s %s", node->name, channel, payload);
    if (going) {
        char why[ADDR_TEXT_MAX + 128];
        snprintf(why, sizeof(why), "Sentinel %s announced %s", node->name, channel);
        if (e->switch_started == 0) {
            e->switch_started = ev_now(e->loop);
        }
        if (e->alarm == NULL) {
            e->alarm = node;
        }
        e->alarm_at = ev_now(e->loop);
        engine_hold(e, why);
    }
    free(copy);
    engine_round_soon(e);
}

void events_on_push(struct link *l, redisReply *msg, void *udata)
{
    struct engine_node *node = udata;
    const char *kind;

    (void)l;
    if (msg == NULL) {
        node->subscribed = false;
        return;
    }
    if (msg->type != REDIS_REPLY_ARRAY || msg->elements < 3 ||
        msg->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }
    kind = msg->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        node->subscribed = true;
        return;
    }
    if (strcmp(kind, "message") == 0 && msg->element[1]->type == REDIS_REPLY_STRING &&
        msg->element[2]->type == REDIS_REPLY_STRING) {
        events_handle(node, msg->element[1]->str, msg->element[2]->str);
    }
}

/*
 * status.c - the Sentinel section of PROXY TOPOLOGY, and the same as data
 * for the admin endpoints: what each Sentinel said in the last round, and
 * the decision taken.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/ctlreport.h"
#include "lib/strbuf.h"
#include "sentinel/engine_int.h"

/* The same as data, for the admin endpoints. NULL if out of memory. */
static struct ctl_report *engine_report(struct engine *e, const struct quorum_decision *d,
                                        const char *decision)
{
    double now = ev_now(e->loop);
    struct ctl_report *r;
    size_t n = 0, i = 0;

    for (struct engine_node *nd = e->nodes; nd != NULL; nd = nd->next) {
        n++;
    }
    r = calloc(1, sizeof(*r) + n * sizeof(r->sentinels[0]));
    if (r == NULL) {
        return NULL;
    }
    r->rounds = e->round;
    r->decision = decision;
    r->answering = d->answers;
    r->votes = d->votes;
    r->going_away = d->going_away;
    r->failovers = e->failovers;
    r->last_switch = e->last_switch;
    r->fenced = e->fenced;
    r->majority_age = e->majority_at > 0 ? now - e->majority_at : -1;
    snprintf(r->why, sizeof(r->why), "%s", e->why);
    r->n = n;
    for (struct engine_node *nd = e->nodes; nd != NULL; nd = nd->next, i++) {
        struct ctl_sentinel *s = &r->sentinels[i];
        snprintf(s->addr, sizeof(s->addr), "%s", nd->name);
        if (nd->report.ok) {
            addr_format(&nd->report.master, s->master, sizeof(s->master));
        }
        snprintf(s->last_error, sizeof(s->last_error), "%s",
                 nd->answer[0] != '\0' ? nd->answer : link_last_error(nd->cmd));
        s->ok = nd->report.ok;
        s->answered = nd->report.ok || nd->answer[0] != '\0';
        s->configured = nd->configured;
        s->subscribed = nd->subscribed;
        s->epoch = nd->report.epoch;
        s->last_ok_age = nd->last_ok > 0 ? now - nd->last_ok : -1;
    }
    return r;
}

void engine_status(struct engine *e, const struct quorum_decision *d)
{
    double now = ev_now(e->loop);
    const char *decision = d->status == QUORUM_AGREED  ? "agreed"
                           : d->status == QUORUM_EPOCH ? "by-epoch"
                           : d->status == QUORUM_SPLIT ? "split"
                                                       : "no-answer";
    struct strbuf sb;
    int i = 0;

    strbuf_init(&sb);
    strbuf_printf(&sb, "# Sentinels\r\n");
    strbuf_printf(&sb, "rounds:%llu\r\n", (unsigned long long)e->round);
    strbuf_printf(&sb, "decision:%s\r\n", decision);
    strbuf_printf(&sb, "sentinels_answering:%d\r\n", d->answers);
    strbuf_printf(&sb, "master_votes:%d\r\n", d->votes);
    strbuf_printf(&sb, "master_going_away:%d\r\n", d->going_away ? 1 : 0);
    strbuf_printf(&sb, "majority_age_ms:%lld\r\n",
                  e->majority_at > 0 ? (long long)((now - e->majority_at) * 1000) : -1LL);
    strbuf_printf(&sb, "writes_fenced:%d\r\n", e->fenced ? 1 : 0);
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next, i++) {
        char m[ADDR_TEXT_MAX] = "-";
        if (n->report.ok) {
            addr_format(&n->report.master, m, sizeof(m));
        }
        strbuf_printf(&sb,
                      "sentinel%d:addr=%s,state=%s,origin=%s,master=%s,epoch=%llu,"
                      "subscribed=%d,last_ok_ms=%lld,last_error=%s\r\n",
                      i, n->name,
                      n->report.ok           ? "ok"
                      : n->answer[0] != '\0' ? "error"
                                             : "down",
                      n->configured ? "configured" : "learnt", m,
                      (unsigned long long)n->report.epoch, n->subscribed ? 1 : 0,
                      n->last_ok > 0 ? (long long)((now - n->last_ok) * 1000) : -1LL,
                      n->answer[0] != '\0'                 ? n->answer
                      : link_last_error(n->cmd)[0] != '\0' ? link_last_error(n->cmd)
                                                           : "-");
    }
    if (!sb.oom) {
        e->rx.status(e->rx.ctx, sb.buf, engine_report(e, d, decision));
        sb.buf = NULL;
    }
    strbuf_free(&sb);
}

/*
 * quorum.c - master decision rules (see quorum.h).
 */
#include "sentinel/quorum.h"

#include <string.h>

bool quorum_has_flag(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    const char *p = flags;

    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, flag, n) == 0) {
            return true;
        }
        p = comma != NULL ? comma + 1 : NULL;
    }
    return false;
}

bool quorum_replica_ok(const char *flags, const char *link_status)
{
    if (flags == NULL || quorum_has_flag(flags, "s_down") || quorum_has_flag(flags, "o_down") ||
        quorum_has_flag(flags, "disconnected")) {
        return false;
    }
    return link_status == NULL || strcmp(link_status, "err") != 0;
}

void quorum_decide(const struct quorum_report *reports, size_t n, struct quorum_decision *d)
{
    uint64_t top = 0;
    int best_count = 0;
    bool tie = false, differ = false;
    const struct quorum_report *first = NULL, *best = NULL;

    memset(d, 0, sizeof(*d));
    for (size_t i = 0; i < n; i++) {
        if (!reports[i].ok) {
            continue;
        }
        d->answers++;
        if (first == NULL) {
            first = &reports[i];
        } else if (!addr_same(&first->master, &reports[i].master)) {
            differ = true;
        }
        if (reports[i].epoch > top) {
            top = reports[i].epoch;
        }
    }
    if (d->answers == 0) {
        d->status = QUORUM_NONE;
        return;
    }
    /* Among the reports with the highest epoch, the address named most. */
    for (size_t i = 0; i < n; i++) {
        int count = 0;
        if (!reports[i].ok || reports[i].epoch != top) {
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            if (reports[k].ok && reports[k].epoch == top &&
                addr_same(&reports[k].master, &reports[i].master)) {
                count++;
            }
        }
        if (count > best_count) {
            best_count = count;
            best = &reports[i];
            tie = false;
        } else if (count == best_count && best != NULL &&
                   !addr_same(&best->master, &reports[i].master)) {
            tie = true;
        }
    }
    if (tie) {
        d->status = QUORUM_SPLIT;
        return;
    }
    d->status = differ ? QUORUM_EPOCH : QUORUM_AGREED;
    d->master = best->master;
    d->epoch = top;
    for (size_t i = 0; i < n; i++) {
        if (!reports[i].ok || !addr_same(&reports[i].master, &best->master)) {
            continue;
        }
        d->votes++;
        if (reports[i].odown || reports[i].failover) {
            d->going_away = true;
        }
    }
}

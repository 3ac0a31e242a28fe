/* The Linux backend's upkeep counters (secsock_backend_stats_read, secsock_backend.h), for the DEBUG log. */
#include "backend_linux.h"

void secsock_backend_stats_read(secsock_backend_stats *out)
{
    /* A full dump of either table counts as a reload; its retries after an interrupted dump count too. */
    out->reloads = __atomic_load_n(&g_dump_count, __ATOMIC_RELAXED);
    out->netns_switches = __atomic_load_n(&g_netns_switches, __ATOMIC_RELAXED);
    pthread_mutex_lock(&g_lock);
    out->overruns = g.overruns;
    out->crosscheck_reloads = g.xcheck_reloads;
    pthread_mutex_unlock(&g_lock);
}

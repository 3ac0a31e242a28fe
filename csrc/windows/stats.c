/* secsock_backend_stats_read (secsock_backend.h) on Windows: the backend keeps no state between queries
 * (WSAQuerySocketSecurity asks the system each time), so there is nothing to reload, overrun, switch or cross-check. */
#include "backend_windows.h"

void secsock_backend_stats_read(secsock_backend_stats *out)
{
    out->reloads = 0;
    out->overruns = 0;
    out->netns_switches = 0;
    out->crosscheck_reloads = 0;
}

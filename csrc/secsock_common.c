/* Helpers shared by every backend: error filling and result clean-up. No platform code, no Python.h. */
#include "secsock_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void secsock_error_clear(secsock_error *err)
{
    /* Not a memset of the whole structure: this runs several times in every query (issue 5). */
    if (err != NULL) {
        err->kind = SECSOCK_ERR_NONE;
        err->errnum = 0;
        err->winerror = 0;
        err->call[0] = '\0';
        err->message[0] = '\0';
    }
}

int secsock_error_set(secsock_error *err, secsock_error_kind kind, int errnum, long winerror, const char *call,
                      const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return -1;
    }
    err->kind = kind;
    err->errnum = errnum;
    err->winerror = winerror;
    snprintf(err->call, sizeof(err->call), "%s", call != NULL ? call : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    if (err->message[0] == '\0') {
        snprintf(err->message, sizeof(err->message), "%s failed", err->call[0] ? err->call : "secsock");
    }
    return -1;
}

void secsock_result_release(secsock_result *r)
{
    secsock_error ignored;

    if (r == NULL) {
        return;
    }
    /* Each handle is closed once: zeroed as soon as it is given back, whatever CloseHandle says. */
    if (r->peer_application_token != 0) {
        (void)secsock_token_close(r->peer_application_token, &ignored);
        r->peer_application_token = 0;
    }
    if (r->peer_machine_token != 0) {
        (void)secsock_token_close(r->peer_machine_token, &ignored);
        r->peer_machine_token = 0;
    }
}

void secsock_free(void *memory)
{
    free(memory);
}

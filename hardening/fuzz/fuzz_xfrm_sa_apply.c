/*
 * libFuzzer target, differential: the SA table updated in place from notifications (sa_apply, 6d74db2) must
 * hold exactly what a fresh dump of the same SAs would. Linked with the Linux backend's units (csrc/linux/).
 *
 * Input: one netlink datagram (every message accepted, as on the notification socket). XFRM_MSG_NEWSA messages
 * before the first XFRM_MSG_FLUSHPOLICY message are the dump (an SA whose identity is already there is left
 * out, as the kernel's table has one SA per identity); every message after it is a notification, parsed with
 * ss_parse_sa_notify and applied with sa_apply. A reference model (a plain list) takes each change the same
 * way; when sa_apply asks for a new dump (-1), the snapshot is rebuilt from the model, as the backend would.
 * At the end every model SA must be found with the same content and nothing else may be reachable.
 */
#include "linux/backend_linux.h"

#include "fuzz_common.h"

#define MODEL_MAX 512

typedef struct {
    ss_snap snap;
    ss_sa model[MODEL_MAX];
    size_t nmodel;
    int phase;
} apply_ctx;

static int model_find(const apply_ctx *c, const ss_sa *a)
{
    size_t i;
    for (i = 0; i < c->nmodel; i++) {
        if (sa_same_id(&c->model[i], a)) {
            return (int)i;
        }
    }
    return -1;
}

static void model_remove(apply_ctx *c, int i)
{
    c->model[i] = c->model[--c->nmodel];
}

/* The backend's answer to "a new dump is needed": the snapshot's SA table rebuilt from the truth. */
static void rebuild(apply_ctx *c)
{
    size_t i;
    snap_free_sas(&c->snap);
    for (i = 0; i < c->nmodel; i++) {
        if (grow((void **)&c->snap.sas, &c->snap.sacap, c->snap.nsas + 1, sizeof(ss_sa)) != 0) {
            abort();
        }
        c->snap.sas[c->snap.nsas++] = c->model[i];
    }
    if (snap_index_sas(&c->snap) != 0) {
        abort();
    }
}

static int on_message(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    apply_ctx *c = vctx;
    ss_sa a;
    const char *why;
    int action, m, valid_before;

    (void)flags;
    if (type == XFRM_MSG_FLUSHPOLICY && c->phase == 0) {
        c->phase = 1;
        rebuild(c); /* the dump: indexed as dump_sas does */
        return 0;
    }
    if (c->phase == 0) {
        if (type == XFRM_MSG_NEWSA && ss_parse_sa(payload, len, &a, &why) == SS_PARSE_OK &&
            model_find(c, &a) < 0 && c->nmodel < MODEL_MAX) {
            c->model[c->nmodel++] = a;
        }
        return 0;
    }
    if (ss_parse_sa_notify(type, payload, len, &a, &action, &why) != SS_PARSE_OK) {
        return 0; /* the backend marks the table stale: a dump of the unchanged truth */
    }
    m = model_find(c, &a);
    /* not larval: valid, or read as expired (the kernel updates such an SA in part: sa_apply dumps again) */
    valid_before = m >= 0 && (sa_valid(&c->model[m]) || c->model[m].expired);
    /* The truth after this notification. */
    switch (action) {
    case SS_SA_UPSERT:
    case SS_SA_UPDATE:
        if (m >= 0) {
            c->model[m] = a;
        } else if (c->nmodel < MODEL_MAX) {
            c->model[c->nmodel++] = a;
        } else {
            return 0;
        }
        break;
    case SS_SA_DELETE:
        if (m >= 0) {
            model_remove(c, m);
        }
        break;
    case SS_SA_DYING:
        if (m >= 0) {
            /* dying for sure, and remembered across a dump (sa_save_dying) */
            c->model[m].dying = c->model[m].dying_notified = 1;
            c->model[m].dying_maybe = 0;
        }
        break;
    default: /* RESYNC: a flush or a type without in-place meaning, the truth unknown here; NONE: unchanged */
        break;
    }
    if (sa_apply(&c->snap, action, &a) != 0) {
        /* Allowed only where the backend documents it: a resync, or an update of an SA that is not larval. */
        if (!(action == SS_SA_RESYNC || (action == SS_SA_UPDATE && valid_before))) {
            abort();
        }
        rebuild(c);
    }
    return 0;
}

static void check(const apply_ctx *c)
{
    const ss_snap *s = &c->snap;
    size_t i, reachable = 0;
    uint32_t h;

    for (h = 0; s->saheads != NULL && h <= s->sahmask; h++) {
        int32_t j, steps = 0;
        for (j = s->saheads[h]; j >= 0; j = s->sanext[j]) {
            if ((size_t)j >= s->nsas || s->sas[j].dead || ++steps > (int32_t)s->nsas) {
                abort(); /* out of range, a hole still linked, or a cycle */
            }
            if ((sa_key_hash(s->sas[j].family, s->sas[j].proto, s->sas[j].daddr) & s->sahmask) != h) {
                abort(); /* linked in the wrong chain */
            }
            reachable++;
        }
    }
    if (reachable != c->nmodel) {
        abort();
    }
    for (i = 0; i < c->nmodel; i++) {
        int32_t prev, j = sa_find(s, &c->model[i], &prev);
        ss_sa got, want;
        if (j < 0) {
            abort();
        }
        got = s->sas[j];
        want = c->model[i];
        got.dead = want.dead = 0;
        if (memcmp(&got, &want, sizeof(got)) != 0) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static apply_ctx c;
    const char *why;

    memset(&c, 0, sizeof(c));
    (void)ss_nl_walk(data, size, 0, 0, on_message, &c, &why);
    if (c.phase == 0) {
        rebuild(&c);
    }
    check(&c);
    snap_free_sas(&c.snap);
    return 0;
}

/*
 * The extension module's internal header: what the units of csrc/module/ and csrc/_secsock.c share, and who owns what.
 *   errors_args.c  raise_backend_error / raise_facade_error; u32_arg, parse_fd, parse_peer, parse_request
 *   results.c      result tuples; SecurityInfoBase (Info_spec); the bound tables (bind_results) and query_info
 *   query_entry.c  secsock.query itself (bind_query makes it): sock alone answered here, the rest by the facade
 *   pending.c      PendingObject (Pending_spec): owns one secsock_pending, freed exactly once; begin_query
 *   family.c       the rest of the family's calls, and the token calls
 *   ../_secsock.c  the module table, PyModuleDef_Init and the slots: module_exec makes a module_state's types,
 *                  module_traverse / module_clear / module_free visit and release them
 *
 * Ownership: every Python object the extension keeps lives in one module object's module_state (multi-phase init,
 * PEP 489/630), so each interpreter that imports the module has its own set, released with that module. The state
 * owns one reference to each non-NULL field. Functions find it through the module they are called on (get_state():
 * no lookup by name; it refuses a module whose exec did not run or which m_clear released). A Pending holds no
 * reference to the state: it owns its backend pending and its type (a heap type's instance keeps its type alive),
 * nothing else. No Python object is process-wide; only the backend's own C state is, counted by
 * secsock_backend_init/fini (one pair per exec).
 */
#ifndef SECSOCK_MODULE_MODULE_H
#define SECSOCK_MODULE_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <string.h>
#include <structmember.h>

#include "secsock_backend.h"

/* Internal to the module: hidden from the extension's dynamic symbol table (ELF only; Windows exports nothing
 * it is not told to). */
#if defined(__GNUC__) && !defined(_WIN32)
#pragma GCC visibility push(hidden)
#endif

/* ---- the module's state ------------------------------------------------------------------------------- */
#define INFO_PROTOCOLS 4 /* SECSOCK_PROTOCOL_DEFAULT .. SECSOCK_PROTOCOL_INVALID */
#define INFO_FLAGS 8     /* every combination of SECURED, ENCRYPTED, IMPERSONATED */
#define INFO_BYTE 256    /* an SA's protocol and mode are bytes: one slot per value, NULL when unnamed */

/* One entry of the cache of recent secured answers' IpsecDetails (results.c says why it is exact). */
#define DETAILS_CACHE 256 /* a power of two (results.c asserts it) */
typedef struct {
    secsock_sa *sas;                   /* the key, PyMem: the outbound SAs then the inbound ones; NULL when empty */
    unsigned char outbound, inbound;   /* how many SAs of each direction the key holds */
    PyObject *details;                 /* NULL: empty slot (and sas NULL) */
} details_entry;

typedef struct {
    PyObject *pending_type;   /* Pending (Pending_spec), made by module_exec */
    PyObject *info_base_type; /* SecurityInfoBase (Info_spec), made by module_exec */
    PyObject *tuple_new;      /* tuple.__new__: makes a NamedTuple from a tuple in C, without its Python __new__ */
    PyObject *fileno_name;    /* "fileno", interned once: looking it up is on the per-connection path */
    /* What bind_results() gave (results.c says what each is); NULL until the facade binds them. */
    PyObject *info_class;
    PyObject *info_protocols[INFO_PROTOCOLS];
    PyObject *info_flags[INFO_FLAGS];
    PyObject *info_in_the_clear;
    PyObject *info_decode;
    PyObject *info_sa_class;
    PyObject *info_ipsec_protocols[INFO_BYTE];
    PyObject *info_ipsec_modes[INFO_BYTE];
    PyObject *reasons[SECSOCK_REASON_COUNT][SECSOCK_REASON_COUNT]; /* SecurityInfo.reason texts made so far */
    details_entry details_cache[DETAILS_CACHE]; /* made from the bound tables: emptied when they change */
    unsigned long details_generation; /* counts table changes: a miss that saw one stores nothing */
    /* What bind_query() gave (query_entry.c says what each is for); NULL until the facade binds them. */
    PyObject *query_general;  /* the facade's query(): every call not answered whole here */
    PyObject *query_after;    /* the facade's upkeep hook after a direct answer */
    PyObject *extension_dict; /* secsock._extension's namespace: "backend" there is this module unless faked */
    PyObject *debug_memo;     /* the secsock logger's isEnabledFor memo (a dict) */
    PyObject *debug_level;    /* logging.DEBUG, the memo's key */
    PyObject *backend_name, *peer_name, *token_access_name, *ipsec2_name; /* interned names */
    int backend_started; /* module_exec's secsock_backend_init succeeded: module_free owes one fini */
} module_state;

/* What a function says of a module whose state is not ready (get_state), or was cleared while it ran. */
#define MODULE_NOT_READY "secsock._secsock: not initialised (exec did not run) or cleared"

/* The state of a module object of this extension, as the slots see it: NULL before exec allocated it. */
#define MODULE_STATE(module) ((module_state *)PyModule_GetState(module))

/*
 * The state of the module a function of the table is called on, ready for use; or NULL with RuntimeError when
 * it is not: exec never ran (importlib.util.module_from_spec alone: no state yet), failed before its end, or
 * m_clear released the state (a finalizer calling in while the collector tears the module down). exec makes
 * info_base_type last of the state's fields and m_clear releases it, so one field says all (one compare on the
 * per-connection path besides the NULL).
 */
static inline module_state *get_state(PyObject *module)
{
    module_state *st = MODULE_STATE(module);

    if (st == NULL || st->info_base_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, MODULE_NOT_READY);
        return NULL;
    }
    return st;
}

/* ---- errors_args.c ------------------------------------------------------------------------------------- */
PyObject *raise_backend_error(const secsock_error *err);
int u32_arg(PyObject *obj, const char *name, uint32_t *out);
int parse_peer(PyObject *peer_obj, secsock_peer *peer, int *has_peer);
int parse_fd(PyObject *fd_obj, secsock_fd *fd);
int parse_request(PyObject *args, secsock_query_request *req);

/* ---- results.c ----------------------------------------------------------------------------------------- */
/* st caches the reason texts; NULL (a Pending's result, which has no state) makes a new one each time. */
PyObject *result_to_tuple(module_state *st, secsock_result *r);
extern PyType_Spec Info_spec;
int results_traverse(module_state *st, visitproc visit, void *arg); /* the bound tables and reason texts */
void results_clear(module_state *st);                                /* releases them (module_clear) */
PyObject *mod_bind_results(PyObject *module, PyObject *args);
PyObject *mod_query_info(PyObject *module, PyObject *args);
int exact_int(PyObject *obj, long long *value); /* 1 and *value for an exact int that fits a long long */
/* The SecurityInfo for sock alone (a new reference), None when sock is not plainly a socket handle (no system
 * call made), NULL with an exception. The tables must be bound. */
PyObject *query_plain(module_state *st, PyObject *sock);
PyObject *mod_query_sock(PyObject *module, PyObject *sock);
PyObject *mod_query(PyObject *module, PyObject *args);

/* ---- query_entry.c ------------------------------------------------------------------------------------- */
int query_entry_traverse(module_state *st, visitproc visit, void *arg);
void query_entry_clear(module_state *st);
PyObject *mod_bind_query(PyObject *module, PyObject *args);

/* ---- pending.c ----------------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    secsock_pending *pending; /* owned; NULL once closed */
    int has_result;           /* a query: result() decodes; a set/delete call: result() returns None */
    int waiters;              /* threads inside wait() with the GIL released */
    int in_result;            /* a thread is inside result() with the GIL released */
} PendingObject;

extern PyType_Spec Pending_spec;
PendingObject *pending_alloc(module_state *st, int has_result); /* a new reference to st's Pending type's */
PyObject *pending_attach(PendingObject *obj, secsock_pending *pending, const secsock_error *err);
PyObject *mod_begin_query(PyObject *module, PyObject *args);

/* ---- family.c ------------------------------------------------------------------------------------------ */
PyObject *mod_set_security_begin(PyObject *module, PyObject *args);
PyObject *mod_set_peer_target_name_begin(PyObject *module, PyObject *args);
PyObject *mod_delete_peer_target_name_begin(PyObject *module, PyObject *args);
PyObject *mod_impersonate_peer(PyObject *module, PyObject *args);
PyObject *mod_revert_impersonation(PyObject *module, PyObject *Py_UNUSED(ignored));
PyObject *mod_token_user(PyObject *module, PyObject *arg);
PyObject *mod_token_groups(PyObject *module, PyObject *arg);
PyObject *mod_token_is_member(PyObject *module, PyObject *args);
PyObject *mod_close_token(PyObject *module, PyObject *arg);

#if defined(__GNUC__) && !defined(_WIN32)
#pragma GCC visibility pop
#endif

#endif /* SECSOCK_MODULE_MODULE_H */

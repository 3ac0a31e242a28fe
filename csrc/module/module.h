/*
 * The extension module's internal header: what the units of csrc/module/ and csrc/_secsock.c share, and who owns what.
 *   errors_args.c  raise_backend_error / raise_facade_error; u32_arg, parse_fd, parse_peer, parse_request
 *   results.c      result tuples; SecurityInfoBase (Info_spec); the bound tables (bind_results) and query_info
 *   pending.c      PendingObject (Pending_spec): owns one secsock_pending, freed exactly once; begin_query
 *   family.c       the rest of the family's calls, and the token calls
 *   ../_secsock.c  the module table, PyInit and module_free, which creates and releases the types above
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

/* ---- errors_args.c ------------------------------------------------------------------------------------- */
PyObject *raise_backend_error(const secsock_error *err);
int u32_arg(PyObject *obj, const char *name, uint32_t *out);
int parse_peer(PyObject *peer_obj, secsock_peer *peer, int *has_peer);
int parse_fd(PyObject *fd_obj, secsock_fd *fd);
int parse_request(PyObject *args, secsock_query_request *req);

/* ---- results.c ----------------------------------------------------------------------------------------- */
PyObject *result_to_tuple(secsock_result *r);
extern PyObject *InfoBaseType;
extern PyType_Spec Info_spec;
extern PyObject *TupleNew;
extern PyObject *FilenoName;
void unbind_results(void);
void release_reasons(void); /* the cached SecurityInfo.reason strings (module_free) */
PyObject *mod_bind_results(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_query_info(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_query(PyObject *Py_UNUSED(module), PyObject *args);

/* ---- pending.c ----------------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    secsock_pending *pending; /* owned; NULL once closed */
    int has_result;           /* a query: result() decodes; a set/delete call: result() returns None */
    int waiters;              /* threads inside wait() with the GIL released */
    int in_result;            /* a thread is inside result() with the GIL released */
} PendingObject;

extern PyObject *PendingType;
extern PyType_Spec Pending_spec;
PendingObject *pending_alloc(int has_result);
PyObject *pending_attach(PendingObject *obj, secsock_pending *pending, const secsock_error *err);
PyObject *mod_begin_query(PyObject *Py_UNUSED(module), PyObject *args);

/* ---- family.c ------------------------------------------------------------------------------------------ */
PyObject *mod_set_security_begin(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_set_peer_target_name_begin(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_delete_peer_target_name_begin(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_impersonate_peer(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_revert_impersonation(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored));
PyObject *mod_token_user(PyObject *Py_UNUSED(module), PyObject *arg);
PyObject *mod_token_groups(PyObject *Py_UNUSED(module), PyObject *arg);
PyObject *mod_token_is_member(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *mod_close_token(PyObject *Py_UNUSED(module), PyObject *arg);

#if defined(__GNUC__) && !defined(_WIN32)
#pragma GCC visibility pop
#endif

#endif /* SECSOCK_MODULE_MODULE_H */

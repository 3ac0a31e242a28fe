/*
 * secsock._secsock's module table: the functions and types the extension exports, its init and its teardown.
 *
 * The extension (this file and csrc/module/, see module.h) is the only code that turns the backend seam
 * (secsock_backend.h) into Python objects. It holds no platform code: the compiled backend (csrc/windows/ or
 * csrc/linux/) does the system calls. Everything that may block (the query, waiting on a pending query,
 * freeing one that is still in flight) runs with the GIL released; a query the backend can answer at once
 * (secsock_query_at_once: Linux's steady query) keeps it. Results travel to the facade (src/secsock/)
 * as plain tuples; the facade builds the typed objects. One exception, for the call a server makes on every
 * accepted connection: query_info() builds the facade's SecurityInfo itself, from tables the facade binds at
 * import.
 *
 * Stable ABI only (Py_LIMITED_API 3.9), so one wheel per platform serves every later CPython.
 */
#include "module/module.h"

static PyObject *mod_backend_stats(PyObject *module, PyObject *Py_UNUSED(args))
{
    secsock_backend_stats stats;

    if (get_state(module) == NULL) {
        return NULL;
    }
    secsock_backend_stats_read(&stats);
    return Py_BuildValue("(KKKK)", (unsigned long long)stats.reloads, (unsigned long long)stats.overruns,
                         (unsigned long long)stats.netns_switches, (unsigned long long)stats.crosscheck_reloads);
}

static PyMethodDef module_methods[] = {
    {"query_info", mod_query_info, METH_VARARGS,
     "query_info(sock, peer, token_access, ipsec2) -> SecurityInfo, or None unless sock alone was given."},
    {"query_sock", mod_query_sock, METH_O,
     "query_sock(sock) -> SecurityInfo, or None: query_info(sock, None, 0, False) in one argument."},
    {"bind_results", mod_bind_results, METH_VARARGS,
     "bind_results(cls, protocols, flags, in_the_clear, decode, sa_cls, ipsec_protocols, ipsec_modes): what "
     "query_info() builds its answer from."},
    {"bind_query", mod_bind_query, METH_VARARGS,
     "bind_query(general, extension_namespace, debug_memo, debug_level, after_direct) -> query: secsock.query, "
     "which answers sock alone here and calls general for the rest."},
    {"query", mod_query, METH_VARARGS,
     "query(fd, peer, token_access, ipsec2) -> raw result tuple; blocks without the GIL."},
    {"begin_query", mod_begin_query, METH_VARARGS,
     "begin_query(fd, peer, token_access, ipsec2) -> Pending; issues the overlapped call."},
    {"close_token", mod_close_token, METH_O, "close_token(handle): CloseHandle on a token handle."},
    {"set_security_begin", mod_set_security_begin, METH_VARARGS,
     "set_security_begin(fd, settings) -> Pending; WSASetSocketSecurity."},
    {"set_peer_target_name_begin", mod_set_peer_target_name_begin, METH_VARARGS,
     "set_peer_target_name_begin(fd, protocol, peer, name) -> Pending; WSASetSocketPeerTargetName."},
    {"delete_peer_target_name_begin", mod_delete_peer_target_name_begin, METH_VARARGS,
     "delete_peer_target_name_begin(fd, peer) -> Pending; WSADeleteSocketPeerTargetName."},
    {"impersonate_peer", mod_impersonate_peer, METH_VARARGS,
     "impersonate_peer(fd, peer): WSAImpersonateSocketPeer on the calling thread."},
    {"revert_impersonation", mod_revert_impersonation, METH_NOARGS,
     "revert_impersonation(): WSARevertImpersonation on the calling thread."},
    {"token_user", mod_token_user, METH_O, "token_user(handle) -> (sid, account)."},
    {"token_groups", mod_token_groups, METH_O, "token_groups(handle) -> ((sid, account), ...)."},
    {"token_is_member", mod_token_is_member, METH_VARARGS,
     "token_is_member(handle, sid_or_account) -> bool; CheckTokenMembership."},
    {"backend_stats", mod_backend_stats, METH_NOARGS,
     "backend_stats() -> (reloads, overruns, netns_switches, crosscheck_reloads): the backend's upkeep counters "
     "(zeros on Windows)."},
    {NULL, NULL, 0, NULL},
};

/*
 * Multi-phase init (PEP 489) with module state (PEP 573/630): each interpreter that imports the module gets its
 * own module object, whose module_state holds its own types and tables (module.h says who owns what), released
 * when that module object goes. A subinterpreter's import and teardown touch nothing another interpreter uses.
 *
 * No Py_mod_multiple_interpreters slot (3.12+, not in the 3.9 limited API): CPython's default for a multi-phase
 * module is "supported in subinterpreters that share the main interpreter's GIL"; one with its own GIL refuses
 * the import. The backend's own C state (Winsock; the netlink snapshot) is process-wide and counted: each exec
 * that started it owes one secsock_backend_fini, paid by module_free.
 */
static int module_exec_steps(PyObject *module)
{
    module_state *st = MODULE_STATE(module);
    secsock_error err;

    secsock_error_clear(&err);
    if (secsock_backend_init(&err) < 0) {
        raise_backend_error(&err);
        return -1;
    }
    st->backend_started = 1; /* from here module_free balances it, whatever fails below */
    st->fileno_name = PyUnicode_InternFromString("fileno");
    if (st->fileno_name == NULL) {
        return -1;
    }
    st->tuple_new = PyObject_GetAttrString((PyObject *)&PyTuple_Type, "__new__");
    if (st->tuple_new == NULL) {
        return -1;
    }
    st->pending_type = PyType_FromSpec(&Pending_spec);
    if (st->pending_type == NULL) {
        return -1;
    }
    /* Last of the state's fields: get_state() reads a module whose info_base_type is set as ready. */
    st->info_base_type = PyType_FromSpec(&Info_spec);
    if (st->info_base_type == NULL) {
        return -1;
    }
    /* PyModule_AddObject steals a reference only on success: the state keeps its own either way. */
    Py_INCREF(st->pending_type);
    if (PyModule_AddObject(module, "Pending", st->pending_type) < 0) {
        Py_DECREF(st->pending_type);
        return -1;
    }
    Py_INCREF(st->info_base_type);
    if (PyModule_AddObject(module, "SecurityInfoBase", st->info_base_type) < 0) {
        Py_DECREF(st->info_base_type);
        return -1;
    }
    if (PyModule_AddStringConstant(module, "BACKEND", secsock_backend_name()) < 0 ||
        PyModule_AddIntConstant(module, "MAX_SAS_PER_DIRECTION", SECSOCK_MAX_SAS) < 0) {
        return -1;
    }
    return 0;
}

static int module_exec(PyObject *module)
{
    if (module_exec_steps(module) < 0) {
        /* CPython 3.9-3.11's PyType_FromSpec returns NULL without an exception when copying the type's name
           fails (no PyErr_NoMemory there; 3.12 sets it): the failed step was an allocation. */
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    return 0;
}

/* The state's references, for the cycle collector: the bound SecurityInfo class and decoder reach back to this
   module through the facade's globals. The state may be NULL (a module whose state was never allocated). */
static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    module_state *st = MODULE_STATE(module);
    int rc;

    if (st == NULL) {
        return 0;
    }
    Py_VISIT(st->pending_type);
    Py_VISIT(st->info_base_type);
    Py_VISIT(st->tuple_new);
    Py_VISIT(st->fileno_name);
    rc = query_entry_traverse(st, visit, arg);
    return rc != 0 ? rc : results_traverse(st, visit, arg);
}

static int module_clear(PyObject *module)
{
    module_state *st = MODULE_STATE(module);

    if (st == NULL) {
        return 0;
    }
    /* First: from here get_state() refuses, so a finalizer the clearing below runs finds no half-cleared state. */
    Py_CLEAR(st->info_base_type);
    query_entry_clear(st);
    results_clear(st);
    Py_CLEAR(st->pending_type); /* Pending and SecurityInfo objects still alive keep their own type */
    Py_CLEAR(st->tuple_new);
    Py_CLEAR(st->fileno_name);
    return 0;
}

static void module_free(void *module)
{
    module_state *st = MODULE_STATE((PyObject *)module);

    module_clear((PyObject *)module);
    if (st != NULL && st->backend_started) {
        st->backend_started = 0;
        secsock_backend_fini();
    }
}

/* Py_mod_gil: the module's state (results.c's cache of answers above all) is read and written on the
 * assumption that the GIL is held, so a free-threaded build keeps the GIL on at import (PYTHON_GIL=0 forces it
 * off: unsupported). Said explicitly, as the free-threading guide asks of modules not yet made safe without it. */
static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
#if !defined(Py_LIMITED_API) && defined(Py_mod_gil)
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef secsock_module = {
    PyModuleDef_HEAD_INIT,
    "secsock._secsock",
    "Backend of the secsock package: WSAQuerySocketSecurity on Windows, XFRM on Linux.",
    (Py_ssize_t)sizeof(module_state),
    module_methods,
    module_slots,
    module_traverse,
    module_clear,
    module_free,
};

PyMODINIT_FUNC PyInit__secsock(void)
{
    return PyModuleDef_Init(&secsock_module);
}

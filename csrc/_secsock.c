/*
 * secsock._secsock's module table: the functions and types the extension exports, its init and its teardown.
 *
 * The extension (this file and csrc/module/, see module.h) is the only code that turns the backend seam
 * (secsock_backend.h) into Python objects. It holds no platform code: the compiled backend (csrc/windows/ or
 * csrc/linux/) does the system calls. Everything that may block (the query, waiting on a pending query,
 * freeing one that is still in flight) runs with the GIL released. Results travel to the facade (src/secsock/)
 * as plain tuples; the facade builds the typed objects. One exception, for the call a server makes on every
 * accepted connection: query_info() builds the facade's SecurityInfo itself, from tables the facade binds at
 * import.
 *
 * Stable ABI only (Py_LIMITED_API 3.9), so one wheel per platform serves every later CPython.
 */
#include "module/module.h"

static PyObject *mod_backend_stats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    secsock_backend_stats stats;
    secsock_backend_stats_read(&stats);
    return Py_BuildValue("(KKKK)", (unsigned long long)stats.reloads, (unsigned long long)stats.overruns,
                         (unsigned long long)stats.netns_switches, (unsigned long long)stats.crosscheck_reloads);
}

static PyMethodDef module_methods[] = {
    {"query_info", mod_query_info, METH_VARARGS,
     "query_info(sock, peer, token_access, ipsec2) -> SecurityInfo, or None unless sock alone was given."},
    {"bind_results", mod_bind_results, METH_VARARGS,
     "bind_results(cls, protocols, flags, in_the_clear, decode, sa_cls, ipsec_protocols, ipsec_modes): what "
     "query_info() builds its answer from."},
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
 * m_size is -1 (single-phase): the types and tables above are one set for the process. A legacy subinterpreter
 * may run PyInit again and free its module before or after the others, so the set is counted: made by the first
 * PyInit, shared by the later ones, cleared when the last module that ran PyInit is freed, never under a module
 * still using it (review of issue 11, finding 11). Each free balances its own secsock_backend_init (it counts).
 */
static int StateUsers;

static void module_free(void *Py_UNUSED(module))
{
    if (StateUsers > 0 && --StateUsers == 0) {
        Py_CLEAR(PendingType);
        unbind_results();
        release_reasons();
        Py_CLEAR(InfoBaseType);
        Py_CLEAR(FilenoName);
        Py_CLEAR(TupleNew);
    }
    secsock_backend_fini();
}

static struct PyModuleDef secsock_module = {
    PyModuleDef_HEAD_INIT,
    "secsock._secsock",
    "Backend of the secsock package: WSAQuerySocketSecurity on Windows, XFRM on Linux.",
    -1,
    module_methods,
    NULL,
    NULL,
    NULL,
    module_free,
};

PyMODINIT_FUNC PyInit__secsock(void)
{
    secsock_error err;
    PyObject *module;

    secsock_error_clear(&err);
    if (secsock_backend_init(&err) < 0) {
        return raise_backend_error(&err);
    }
    module = PyModule_Create(&secsock_module);
    if (module == NULL) {
        secsock_backend_fini();
        return NULL;
    }
    StateUsers++; /* from here module_free balances it */
    if (StateUsers == 1) {
        PendingType = PyType_FromSpec(&Pending_spec);
    }
    if (PendingType == NULL) {
        Py_DECREF(module); /* module_free runs and balances secsock_backend_init */
        return NULL;
    }
    /* One reference stays in PendingType (released by module_free), one goes to the module's dict. */
    Py_INCREF(PendingType);
    if (PyModule_AddObject(module, "Pending", PendingType) < 0) {
        Py_DECREF(PendingType); /* AddObject steals only on success */
        Py_DECREF(module);
        return NULL;
    }
    if (StateUsers == 1) {
        FilenoName = PyUnicode_InternFromString("fileno");
        TupleNew = FilenoName != NULL ? PyObject_GetAttrString((PyObject *)&PyTuple_Type, "__new__") : NULL;
        InfoBaseType = TupleNew != NULL ? PyType_FromSpec(&Info_spec) : NULL;
    }
    if (InfoBaseType == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(InfoBaseType);
    if (PyModule_AddObject(module, "SecurityInfoBase", InfoBaseType) < 0) {
        Py_DECREF(InfoBaseType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "BACKEND", secsock_backend_name()) < 0 ||
        PyModule_AddIntConstant(module, "MAX_SAS_PER_DIRECTION", SECSOCK_MAX_SAS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

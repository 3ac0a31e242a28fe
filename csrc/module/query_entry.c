/*
 * secsock.query itself: a function of the extension (bind_query makes it), which answers sock alone in C and
 * hands every other call to the facade's general path, a Python function with the same signature.
 *
 * Why in C (issue 14, speed): a server calls query() on every accepted connection, and the Python function
 * around the one-call path (its frame, three keyword-only defaults, the backend and logger checks) cost as much
 * as 0.4x getpeername on the host and ~5 us of a ~23 us answer under the VM's emulation. What that function
 * checked is checked here, in the same order and with the same outcome:
 *   - the tests' fakes: secsock._extension.backend must be this very module, read from that module's namespace
 *     on every call (the tests swap it), else the general path runs;
 *   - the arguments: one positional, and keywords only with their defaults (peer None, token_access an exact 0,
 *     ipsec2 False: what query_async passes), else the general path checks them and names what is wrong;
 *   - sock plainly a socket handle (query_plain answers None, having made no system call, otherwise);
 *   - after an answer, the upkeep log: the facade's hook runs unless the secsock logger's own memo of
 *     isEnabledFor(DEBUG) (logging.Logger._cache, emptied in place on every level change) says False.
 * The general path is called with the arguments exactly as given, so its errors and its answers are the
 * facade's own; a TypeError for a missing sock names query().
 */
#include "module.h"

/* The signature and the whole documentation: help() and inspect.signature() read them from here. */
PyDoc_STRVAR(query_doc,
             "query($module, sock, *, peer=None, token_access=0, ipsec2=False)\n--\n\n"
             "Ask the system how the traffic on sock is secured (WSAQuerySocketSecurity on Windows, XFRM on "
             "Linux).\n\n"
             "sock: a connected TCP socket, or a UDP socket with ``peer=(host, port)`` naming the peer (a numeric "
             "IP\naddress in the socket's family); anything with fileno(), or a raw socket handle.\n"
             "token_access: the access mask for the peer's access tokens (Windows; 0 asks for none).\n"
             "ipsec2: also ask for the IPsec main-mode and quick-mode SA ids (Windows 7 and later).\n\n"
             "Returns a SecurityInfo. Blocks until the system answers, without the GIL whenever the answer "
             "may wait;\non Windows the call is synchronous (no OVERLAPPED), and Ctrl+C during it is raised when "
             "it returns.\nRaises ValueError or TypeError for a bad argument, an OSError subclass carrying the "
             "system's code\n(``winerror`` on Windows) when the system call fails, PermissionError on Linux "
             "without CAP_NET_ADMIN.");

/* METH_FASTCALL (arguments as an array, no tuple built per call) joined the stable ABI in 3.10 (bpo-42171); the
 * wheel is built against 3.9's, whose headers hide the flag. Its value has been 0x0080 since 3.7, and bind_query
 * gives it only to an interpreter of 3.10 or later (sys.hexversion), for which the stable ABI promises it; 3.9
 * gets METH_VARARGS. Issue 14, speed: the tuple and the tp_call path around it cost ~0.15x getpeername. */
#define QUERY_METH_FASTCALL 0x0080
#if defined(METH_FASTCALL) && METH_FASTCALL != QUERY_METH_FASTCALL
#error "METH_FASTCALL is not 0x0080 in these headers: the value query_entry.c assumes for the 3.9 stable ABI"
#endif
#define FASTCALL_SINCE 0x030A0000 /* 3.10 */

/* A keyword a call may carry and still be answered here: one of query's, with its default value. */
static int default_keyword(const module_state *st, PyObject *key, PyObject *value)
{
    long long access;

    /* Interned names compare by identity; a name built at run time takes the general path (same answer). */
    if (key == st->peer_name) {
        return value == Py_None;
    }
    if (key == st->token_access_name) {
        return exact_int(value, &access) && access == 0;
    }
    return key == st->ipsec2_name && value == Py_False;
}

/* 1 when secsock._extension.backend is this module (no test's fake), 0 when not, -1 with an exception. */
static int backend_is_this(const module_state *st, PyObject *module)
{
    PyObject *backend = PyDict_GetItemWithError(st->extension_dict, st->backend_name); /* borrowed */

    if (backend == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return backend == module;
}

/* After a direct answer: the facade's upkeep hook, unless isEnabledFor's memo says DEBUG is off. 0, or -1. */
static int after_direct_answer(const module_state *st)
{
    PyObject *enabled = PyDict_GetItemWithError(st->debug_memo, st->debug_level); /* borrowed */
    PyObject *rc;

    if (enabled == Py_False) {
        return 0;
    }
    if (enabled == NULL && PyErr_Occurred()) {
        return -1;
    }
    rc = PyObject_CallObject(st->query_after, NULL); /* no entry, or True: the hook asks isEnabledFor */
    if (rc == NULL) {
        return -1;
    }
    Py_DECREF(rc);
    return 0;
}

/* The module's state with its general path bound, or NULL with RuntimeError: read again after any Python code
 * ran (sock.fileno(), the hook), which may have cleared the module (m_clear: get_state then refuses). */
static module_state *bound_state(PyObject *module)
{
    module_state *st = get_state(module);

    if (st != NULL && st->query_general == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "secsock.query: the facade has not bound its general path");
        return NULL;
    }
    return st;
}

/* query(sock) alone, answered here: 1 with the answer in *info (a new reference), 0 when the call is the
 * general path's (a test's fake backend, sock not plainly a socket handle), -1 with an exception. *st is read
 * again after the Python code query_plain and the hook may run. */
static int direct_answer(PyObject *module, module_state **st, PyObject *sock, PyObject **info)
{
    int direct = backend_is_this(*st, module);

    if (direct <= 0) {
        return direct;
    }
    *info = query_plain(*st, sock);
    if (*info == NULL) {
        return -1;
    }
    *st = bound_state(module); /* sock.fileno() ran */
    if (*st == NULL) {
        Py_CLEAR(*info);
        return -1;
    }
    if (*info == Py_None) {
        Py_CLEAR(*info); /* not plainly a socket handle: the general path says what is wrong */
        return 0;
    }
    if (after_direct_answer(*st) < 0) {
        Py_CLEAR(*info);
        return -1;
    }
    return 1;
}

/* The general path, called with the arguments exactly as given. A strong reference for the call: it may run
 * code that rebinds it (a reload does). */
static PyObject *general_answer(const module_state *st, PyObject *args, PyObject *kwargs)
{
    PyObject *general = st->query_general, *info;

    Py_INCREF(general);
    info = PyObject_Call(general, args, kwargs);
    Py_DECREF(general);
    return info;
}

/* query's entry on 3.9 (METH_VARARGS | METH_KEYWORDS). */
static PyObject *query_entry_varargs(PyObject *module, PyObject *args, PyObject *kwargs)
{
    module_state *st = bound_state(module);
    PyObject *info = NULL, *key, *value;
    Py_ssize_t pos = 0;
    int direct;

    if (st == NULL) {
        return NULL;
    }
    direct = st->info_class != NULL && PyTuple_Size(args) == 1;
    while (direct && kwargs != NULL && PyDict_Next(kwargs, &pos, &key, &value)) {
        direct = default_keyword(st, key, value);
    }
    if (direct) {
        direct = direct_answer(module, &st, PyTuple_GetItem(args, 0), &info); /* borrowed: args holds it */
        if (direct != 0) {
            return direct > 0 ? info : NULL;
        }
    }
    return general_answer(st, args, kwargs);
}

/* The general path from a vectorcall: the positional arguments as a tuple, the keywords as a dict. */
static PyObject *general_answer_fast(const module_state *st, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames), i;
    PyObject *positional = PyTuple_New(nargs), *keywords = NULL, *info = NULL;

    if (positional == NULL) {
        return NULL;
    }
    for (i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SetItem(positional, i, args[i]); /* steals; cannot fail on a new tuple of that size */
    }
    if (nkw > 0) {
        keywords = PyDict_New();
        if (keywords == NULL) {
            goto done;
        }
        for (i = 0; i < nkw; i++) {
            if (PyDict_SetItem(keywords, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0) {
                goto done;
            }
        }
    }
    info = general_answer(st, positional, keywords);
done:
    Py_XDECREF(keywords);
    Py_DECREF(positional);
    return info;
}

/* query's entry on 3.10 and later (METH_FASTCALL | METH_KEYWORDS): kwnames names the values after args[nargs]. */
static PyObject *query_entry_fast(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    module_state *st = bound_state(module);
    PyObject *info = NULL;
    Py_ssize_t nkw, i;
    int direct;

    if (st == NULL) {
        return NULL;
    }
    nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
    direct = st->info_class != NULL && nargs == 1;
    for (i = 0; direct && i < nkw; i++) {
        direct = default_keyword(st, PyTuple_GetItem(kwnames, i), args[nargs + i]);
    }
    if (direct) {
        direct = direct_answer(module, &st, args[0], &info); /* borrowed: the caller holds args for the call */
        if (direct != 0) {
            return direct > 0 ? info : NULL;
        }
    }
    return general_answer_fast(st, args, nargs, kwnames);
}

static PyMethodDef query_def_varargs = {"query", (PyCFunction)(void (*)(void))query_entry_varargs,
                                        METH_VARARGS | METH_KEYWORDS, query_doc};
static PyMethodDef query_def_fast = {"query", (PyCFunction)(void (*)(void))query_entry_fast,
                                     QUERY_METH_FASTCALL | METH_KEYWORDS, query_doc};

/* The definition for the running interpreter: METH_FASTCALL where the stable ABI has it (sys.hexversion
 * 3.10 or later); METH_VARARGS, right on every version, where the version cannot be read. */
static PyMethodDef *query_def_here(void)
{
    PyObject *hexversion = PySys_GetObject("hexversion"); /* borrowed; sets no exception */
    unsigned long version;

    if (hexversion == NULL || !PyLong_CheckExact(hexversion)) {
        return &query_def_varargs;
    }
    version = PyLong_AsUnsignedLong(hexversion);
    if (version == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or too large: not a version */
        return &query_def_varargs;
    }
    return version >= FASTCALL_SINCE ? &query_def_fast : &query_def_varargs;
}

int query_entry_traverse(module_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->query_general);
    Py_VISIT(st->query_after);
    Py_VISIT(st->extension_dict);
    Py_VISIT(st->debug_memo);
    Py_VISIT(st->debug_level);
    Py_VISIT(st->backend_name);
    Py_VISIT(st->peer_name);
    Py_VISIT(st->token_access_name);
    Py_VISIT(st->ipsec2_name);
    return 0;
}

void query_entry_clear(module_state *st)
{
    Py_CLEAR(st->query_general);
    Py_CLEAR(st->query_after);
    Py_CLEAR(st->extension_dict);
    Py_CLEAR(st->debug_memo);
    Py_CLEAR(st->debug_level);
    Py_CLEAR(st->backend_name);
    Py_CLEAR(st->peer_name);
    Py_CLEAR(st->token_access_name);
    Py_CLEAR(st->ipsec2_name);
}

/*
 * bind_query(general, extension_namespace, debug_memo, debug_level, after_direct) -> query: what the function
 * above checks, given by the facade at import. A second bind (importlib.reload of the facade) replaces the first
 * for every function this module made, as a reload means. Returns a new function, named query, in module
 * "secsock".
 */
PyObject *mod_bind_query(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module);
    PyObject *general, *namespace, *memo, *level, *after, *module_name, *function;

    if (st == NULL) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!OO:bind_query", &general, &PyDict_Type, &namespace, &PyDict_Type, &memo,
                          &level, &after)) {
        return NULL;
    }
    if (!PyCallable_Check(general) || !PyCallable_Check(after)) {
        PyErr_SetString(PyExc_TypeError, "bind_query: general and after_direct must be callable");
        return NULL;
    }
    query_entry_clear(st); /* a second bind (importlib.reload of the facade) replaces the first */
    st->backend_name = PyUnicode_InternFromString("backend");
    st->peer_name = PyUnicode_InternFromString("peer");
    st->token_access_name = PyUnicode_InternFromString("token_access");
    st->ipsec2_name = PyUnicode_InternFromString("ipsec2");
    module_name = PyUnicode_FromString("secsock");
    if (st->backend_name == NULL || st->peer_name == NULL || st->token_access_name == NULL ||
        st->ipsec2_name == NULL || module_name == NULL) {
        Py_XDECREF(module_name);
        query_entry_clear(st);
        return NULL;
    }
    function = PyCFunction_NewEx(query_def_here(), module, module_name); /* holds module and module_name */
    Py_DECREF(module_name);
    if (function == NULL) {
        query_entry_clear(st);
        return NULL;
    }
    Py_INCREF(general);
    st->query_general = general;
    Py_INCREF(after);
    st->query_after = after;
    Py_INCREF(namespace);
    st->extension_dict = namespace;
    Py_INCREF(memo);
    st->debug_memo = memo;
    Py_INCREF(level);
    st->debug_level = level;
    return function;
}

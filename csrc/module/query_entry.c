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

/* The keywords a call may carry and still be answered here: each with its default value only. */
static int defaults_only(const module_state *st, PyObject *kwargs)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    long long access;

    while (PyDict_Next(kwargs, &pos, &key, &value)) {
        /* Interned names compare by identity; a name built at run time takes the general path (same answer). */
        if (key == st->peer_name) {
            if (value != Py_None) {
                return 0;
            }
        } else if (key == st->token_access_name) {
            if (!exact_int(value, &access) || access != 0) {
                return 0;
            }
        } else if (key != st->ipsec2_name || value != Py_False) {
            return 0;
        }
    }
    return 1;
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

static PyObject *query_entry(PyObject *module, PyObject *args, PyObject *kwargs)
{
    module_state *st = bound_state(module);
    PyObject *info, *general;
    int direct;

    if (st == NULL) {
        return NULL;
    }
    direct = st->info_class != NULL && PyTuple_Size(args) == 1 && (kwargs == NULL || defaults_only(st, kwargs));
    if (direct) {
        direct = backend_is_this(st, module);
        if (direct < 0) {
            return NULL;
        }
    }
    if (direct) {
        info = query_plain(st, PyTuple_GetItem(args, 0)); /* borrowed item: args holds it for the call */
        if (info == NULL) {
            return NULL;
        }
        st = bound_state(module); /* sock.fileno() ran */
        if (st == NULL) {
            Py_DECREF(info);
            return NULL;
        }
        if (info != Py_None) {
            if (after_direct_answer(st) < 0) {
                Py_DECREF(info);
                return NULL;
            }
            return info;
        }
        Py_DECREF(info); /* not plainly a socket handle: the general path says what is wrong */
    }
    /* A strong reference for the call: the general path may run code that rebinds it (a reload does). */
    general = st->query_general;
    Py_INCREF(general);
    info = PyObject_Call(general, args, kwargs);
    Py_DECREF(general);
    return info;
}

static PyMethodDef query_def = {"query", (PyCFunction)(void (*)(void))query_entry, METH_VARARGS | METH_KEYWORDS,
                                query_doc};

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
    function = PyCFunction_NewEx(&query_def, module, module_name); /* holds module and module_name */
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

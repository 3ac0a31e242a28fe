/* Errors and arguments: backend errors raised as the facade's exceptions; arguments parsed into seam requests. */
#include "module.h"

/* ---- errors -------------------------------------------------------------------------------------------- */

/* Raise secsock.<name> (defined in the pure-Python facade, secsock._errors) with a message. */
static void raise_facade_error(const char *name, PyObject *args)
{
    PyObject *module = PyImport_ImportModule("secsock._errors");
    PyObject *type = NULL;

    if (module != NULL) {
        type = PyObject_GetAttrString(module, name);
        Py_DECREF(module);
    }
    if (type != NULL) {
        PyObject *exc = PyObject_CallObject(type, args);
        if (exc != NULL) {
            PyErr_SetObject(type, exc);
            Py_DECREF(exc);
        }
        Py_DECREF(type);
    }
}

/*
 * Turn a backend error into the matching Python exception. OS errors become OSError(errno, message, None,
 * winerror): on Windows the winerror picks errno and the subclass (WSAECONNRESET -> ConnectionResetError),
 * elsewhere errno does (EPERM -> PermissionError), exactly as CPython's own socket errors do.
 */
PyObject *raise_backend_error(const secsock_error *err)
{
    char text[sizeof(err->call) + sizeof(err->message) + 4];
    PyObject *args;

    if (err->call[0] != '\0') {
        PyOS_snprintf(text, sizeof(text), "%s: %s", err->call, err->message);
    } else {
        PyOS_snprintf(text, sizeof(text), "%s", err->message);
    }
    switch (err->kind) {
    case SECSOCK_ERR_ARGUMENT:
        PyErr_SetString(PyExc_ValueError, text);
        break;
    case SECSOCK_ERR_NOMEM:
        PyErr_NoMemory();
        break;
    case SECSOCK_ERR_UNSUPPORTED:
        args = Py_BuildValue("(s)", text);
        if (args != NULL) {
            raise_facade_error("UnsupportedOperation", args);
            Py_DECREF(args);
        }
        break;
    case SECSOCK_ERR_OS:
    default:
        if (err->winerror != 0) {
            args = Py_BuildValue("(isOl)", err->errnum, text, Py_None, err->winerror);
        } else {
            args = Py_BuildValue("(is)", err->errnum, text);
        }
        if (args != NULL) {
            PyObject *exc = PyObject_CallObject(PyExc_OSError, args);
            Py_DECREF(args);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        break;
    }
    return NULL;
}

/* ---- arguments ----------------------------------------------------------------------------------------- */

/* A 32-bit unsigned value (a flag set, an enumeration, a field of an address), range-checked and named:
   never truncated the way the `k`, `I` and `K` formats mask (issue 11, defect 9; its review, finding 10).
   0, or -1 with TypeError or ValueError. */
int u32_arg(PyObject *obj, const char *name, uint32_t *out)
{
    unsigned long long value;

    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an int", name);
        return -1;
    }
    value = PyLong_AsUnsignedLongLong(obj);
    if ((value == (unsigned long long)-1 && PyErr_Occurred()) || value > 0xFFFFFFFFull) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: must be an int from 0 to 0xFFFFFFFF", name);
        return -1;
    }
    *out = (uint32_t)value;
    return 0;
}

/* (is_ipv6, packed address, port, flowinfo, scope_id) or None, built by the facade from (host, port[, ...]). */
int parse_peer(PyObject *peer_obj, secsock_peer *peer, int *has_peer)
{
    int is_ipv6;
    const char *packed;
    Py_ssize_t packed_len;
    uint32_t port, flowinfo, scope_id;
    PyObject *packed_obj, *port_obj, *flowinfo_obj, *scope_obj;

    memset(peer, 0, sizeof(*peer));
    *has_peer = 0;
    if (peer_obj == Py_None) {
        return 0;
    }
    if (!PyArg_ParseTuple(peer_obj, "pOOOO", &is_ipv6, &packed_obj, &port_obj, &flowinfo_obj, &scope_obj) ||
        u32_arg(port_obj, "peer: port", &port) < 0 || u32_arg(flowinfo_obj, "peer: flowinfo", &flowinfo) < 0 ||
        u32_arg(scope_obj, "peer: scope_id", &scope_id) < 0) {
        return -1;
    }
    if (port > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "peer: port must be an int from 0 to 65535, not %lu", (unsigned long)port);
        return -1;
    }
    if (PyBytes_AsStringAndSize(packed_obj, (char **)&packed, &packed_len) < 0) {
        return -1;
    }
    if (packed_len != (is_ipv6 ? 16 : 4)) {
        PyErr_SetString(PyExc_ValueError, "peer: malformed address");
        return -1;
    }
    *has_peer = 1;
    peer->is_ipv6 = is_ipv6;
    memcpy(peer->addr, packed, (size_t)packed_len);
    peer->port = (uint16_t)port;
    peer->flowinfo = flowinfo;
    peer->scope_id = scope_id;
    return 0;
}

/* A socket handle from a non-negative int (the facade has already turned sockets into handles). */
int parse_fd(PyObject *fd_obj, secsock_fd *fd)
{
    unsigned long long value = PyLong_AsUnsignedLongLong(fd_obj);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "sock: the socket handle must be a non-negative integer");
        return -1;
    }
    *fd = (secsock_fd)value;
    return 0;
}

/* Fill a query request from (fd, peer, token_access, ipsec2); the facade has already checked their types. */
int parse_request(PyObject *args, secsock_query_request *req)
{
    PyObject *fd_obj, *peer_obj, *access_obj;
    int ipsec2;

    memset(req, 0, sizeof(*req));
    if (!PyArg_ParseTuple(args, "OOOp", &fd_obj, &peer_obj, &access_obj, &ipsec2)) {
        return -1;
    }

    if (parse_fd(fd_obj, &req->sock) < 0) {
        return -1;
    }

    req->token_access = 0;
    {
        unsigned long long access = PyLong_AsUnsignedLongLong(access_obj);
        if ((access == (unsigned long long)-1 && PyErr_Occurred()) || access > 0xFFFFFFFFull) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "token_access: must be an access mask from 0 to 0xFFFFFFFF");
            return -1;
        }
        req->token_access = (uint32_t)access;
    }
    req->ipsec2 = ipsec2;

    if (parse_peer(peer_obj, &req->peer, &req->has_peer) < 0) {
        return -1;
    }
    return 0;
}

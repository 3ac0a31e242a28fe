/*
 * secsock._secsock: the only file that turns the backend seam (secsock_backend.h) into Python objects.
 *
 * It holds no platform code: the compiled backend (backend_windows.c or backend_linux.c) does the system
 * calls. Everything that may block (the query, waiting on a pending query, freeing one that is still in
 * flight) runs with the GIL released. Results travel to the facade (src/secsock/) as plain tuples; the
 * facade builds the typed objects. One exception, for the call a server makes on every accepted connection:
 * query_info() builds the facade's SecurityInfo itself, from tables the facade binds at import.
 *
 * Stable ABI only (Py_LIMITED_API 3.9), so one wheel per platform serves every later CPython.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <string.h>
#include <structmember.h>

#include "secsock_backend.h"

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
static PyObject *raise_backend_error(const secsock_error *err)
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

/* (is_ipv6, packed address, port, flowinfo, scope_id) or None, built by the facade from (host, port[, ...]). */
static int parse_peer(PyObject *peer_obj, secsock_peer *peer, int *has_peer)
{
    int is_ipv6;
    const char *packed;
    Py_ssize_t packed_len;
    unsigned int port;
    unsigned long long flowinfo, scope_id; /* K: a C long is 32 bits on Windows, too narrow to range-check */
    PyObject *packed_obj;

    memset(peer, 0, sizeof(*peer));
    *has_peer = 0;
    if (peer_obj == Py_None) {
        return 0;
    }
    if (!PyArg_ParseTuple(peer_obj, "pOIKK", &is_ipv6, &packed_obj, &port, &flowinfo, &scope_id)) {
        return -1;
    }
    if (PyBytes_AsStringAndSize(packed_obj, (char **)&packed, &packed_len) < 0) {
        return -1;
    }
    if (packed_len != (is_ipv6 ? 16 : 4) || port > 0xFFFF || flowinfo > 0xFFFFFFFFull || scope_id > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "peer: malformed address");
        return -1;
    }
    *has_peer = 1;
    peer->is_ipv6 = is_ipv6;
    memcpy(peer->addr, packed, (size_t)packed_len);
    peer->port = (uint16_t)port;
    peer->flowinfo = (uint32_t)flowinfo;
    peer->scope_id = (uint32_t)scope_id;
    return 0;
}

/* A socket handle from a non-negative int (the facade has already turned sockets into handles). */
static int parse_fd(PyObject *fd_obj, secsock_fd *fd)
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
static int parse_request(PyObject *args, secsock_query_request *req)
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

/* ---- results ------------------------------------------------------------------------------------------- */

/* An algorithm name from a fixed-size field; bounded even if the backend forgot the terminator. */
static PyObject *alg_name(const char *field)
{
    const char *end = memchr(field, '\0', SECSOCK_ALG_NAME_MAX);
    Py_ssize_t len = end != NULL ? (Py_ssize_t)(end - field) : SECSOCK_ALG_NAME_MAX;
    return PyUnicode_DecodeASCII(field, len, "replace");
}

/* (proto, mode, spi, reqid, encryption, integrity, aead) with "" for an absent algorithm. */
static PyObject *sa_raw(const secsock_sa *sa)
{
    /* "N" steals the new references, and Py_BuildValue releases them if it fails. */
    return Py_BuildValue("(iikkNNN)", (int)sa->proto, (int)sa->mode, (unsigned long)sa->spi,
                         (unsigned long)sa->reqid, alg_name(sa->encryption), alg_name(sa->integrity),
                         alg_name(sa->aead));
}

/* One direction's SAs, outermost first, each made by make_sa (sa_raw, or sa_object for query_info). */
static PyObject *direction_tuple(const secsock_direction *dir, PyObject *(*make_sa)(const secsock_sa *))
{
    size_t count = dir->count <= SECSOCK_MAX_SAS ? dir->count : SECSOCK_MAX_SAS;
    PyObject *tuple = PyTuple_New((Py_ssize_t)count);
    size_t i;

    for (i = 0; tuple != NULL && i < count; i++) {
        PyObject *item = make_sa(&dir->sas[i]);
        if (item == NULL || PyTuple_SetItem(tuple, (Py_ssize_t)i, item) < 0) { /* SetItem steals item */
            Py_CLEAR(tuple);
        }
    }
    return tuple;
}

/*
 * (protocol, flags, application_token, machine_token, ipsec2, ipsec) for the facade. The token handles move
 * into the tuple as ints; if building it fails they are closed here, so no path leaks them.
 */
static PyObject *result_to_tuple(secsock_result *r)
{
    PyObject *ipsec2 = NULL, *detail = NULL, *outbound = NULL, *inbound = NULL, *tuple = NULL;

    if (r->has_ipsec2) {
        ipsec2 = Py_BuildValue("(KKky#)", (unsigned long long)r->mm_sa_id, (unsigned long long)r->qm_sa_id,
                               (unsigned long)r->negotiation_winerr, (const char *)r->sa_lookup_context,
                               (Py_ssize_t)sizeof(r->sa_lookup_context));
    } else {
        ipsec2 = Py_None;
        Py_INCREF(ipsec2);
    }
    if (ipsec2 == NULL) {
        goto fail;
    }
    if (r->has_ipsec_detail) {
        outbound = direction_tuple(&r->outbound, sa_raw);
        inbound = outbound != NULL ? direction_tuple(&r->inbound, sa_raw) : NULL;
        detail = inbound != NULL ? PyTuple_Pack(2, outbound, inbound) : NULL;
        Py_XDECREF(outbound);
        Py_XDECREF(inbound);
    } else {
        detail = Py_None;
        Py_INCREF(detail);
    }
    if (detail == NULL) {
        goto fail;
    }
    tuple = Py_BuildValue("(kkKKOO)", (unsigned long)r->protocol, (unsigned long)r->flags,
                          (unsigned long long)r->peer_application_token,
                          (unsigned long long)r->peer_machine_token, ipsec2, detail);
    Py_DECREF(ipsec2);
    Py_DECREF(detail);
    if (tuple == NULL) {
        secsock_result_release(r);
    }
    return tuple;

fail:
    Py_XDECREF(ipsec2);
    secsock_result_release(r);
    return NULL;
}

/* ---- SecurityInfoBase: the fields of secsock.SecurityInfo ---------------------------------------------- */

/*
 * The facade's SecurityInfo subclasses this type (adding behaviour, no fields: __slots__ = ()), so that
 * query_info() can fill a result in C without running Python code. A field never set reads as None.
 */
typedef struct {
    PyObject_HEAD
    PyObject *protocol;
    PyObject *flags;
    PyObject *peer_application_token;
    PyObject *peer_machine_token;
    PyObject *mm_sa_id;
    PyObject *qm_sa_id;
    PyObject *negotiation_error;
    PyObject *sa_lookup_context;
    PyObject *ipsec;
} InfoObject;

static PyObject *InfoBaseType; /* heap type, created at import */

#define INFO_FIELD(name) {#name, T_OBJECT, offsetof(InfoObject, name), 0, NULL}
static PyMemberDef Info_members[] = {
    INFO_FIELD(protocol),
    INFO_FIELD(flags),
    INFO_FIELD(peer_application_token),
    INFO_FIELD(peer_machine_token),
    INFO_FIELD(mm_sa_id),
    INFO_FIELD(qm_sa_id),
    INFO_FIELD(negotiation_error),
    INFO_FIELD(sa_lookup_context),
    INFO_FIELD(ipsec),
    {NULL, 0, 0, 0, NULL},
};
#undef INFO_FIELD

static int Info_traverse(PyObject *self, visitproc visit, void *arg)
{
    InfoObject *o = (InfoObject *)self;
    Py_VISIT(Py_TYPE(self)); /* a heap type's instances keep it alive */
    Py_VISIT(o->protocol);
    Py_VISIT(o->flags);
    Py_VISIT(o->peer_application_token);
    Py_VISIT(o->peer_machine_token);
    Py_VISIT(o->mm_sa_id);
    Py_VISIT(o->qm_sa_id);
    Py_VISIT(o->negotiation_error);
    Py_VISIT(o->sa_lookup_context);
    Py_VISIT(o->ipsec);
    return 0;
}

static int Info_clear(PyObject *self)
{
    InfoObject *o = (InfoObject *)self;
    Py_CLEAR(o->protocol);
    Py_CLEAR(o->flags);
    Py_CLEAR(o->peer_application_token);
    Py_CLEAR(o->peer_machine_token);
    Py_CLEAR(o->mm_sa_id);
    Py_CLEAR(o->qm_sa_id);
    Py_CLEAR(o->negotiation_error);
    Py_CLEAR(o->sa_lookup_context);
    Py_CLEAR(o->ipsec);
    return 0;
}

static void Info_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);

    PyObject_GC_UnTrack(self);
    Info_clear(self);
    tp_free(self);
    Py_DECREF(type); /* the base of a heap subclass releases the type (subtype_dealloc leaves it to us) */
}

static PyType_Slot Info_slots[] = {
    {Py_tp_dealloc, (void *)Info_dealloc},
    {Py_tp_traverse, (void *)Info_traverse},
    {Py_tp_clear, (void *)Info_clear},
    {Py_tp_members, Info_members},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_doc, "The fields of secsock.SecurityInfo, kept in C so a query can fill them without Python code."},
    {0, NULL},
};

static PyType_Spec Info_spec = {
    "secsock._secsock.SecurityInfoBase",
    sizeof(InfoObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    Info_slots,
};

/*
 * What bind_results() gave: the SecurityInfo class, its enum members by value, the "in the clear" IPsec
 * details (whose class, IpsecDetails, holds the SAs otherwise), the SecurityAssociation class with the
 * IpsecProtocol and IpsecMode members by value, and the facade's decoder for every other answer (tokens,
 * IPsec2 fields, values no table holds). Until they are bound, query_info() answers None and the facade
 * takes its general path.
 */
#define INFO_PROTOCOLS 4 /* SECSOCK_PROTOCOL_DEFAULT .. SECSOCK_PROTOCOL_INVALID */
#define INFO_FLAGS 8     /* every combination of SECURED, ENCRYPTED, IMPERSONATED */
#define INFO_BYTE 256    /* an SA's protocol and mode are bytes: one slot per value, NULL when unnamed */
static PyObject *InfoClass;
static PyObject *InfoProtocols[INFO_PROTOCOLS];
static PyObject *InfoFlags[INFO_FLAGS];
static PyObject *InfoInTheClear;
static PyObject *InfoDecode;
static PyObject *InfoSaClass;
static PyObject *InfoIpsecProtocols[INFO_BYTE];
static PyObject *InfoIpsecModes[INFO_BYTE];
static PyObject *TupleNew; /* tuple.__new__: makes a NamedTuple from a tuple in C, without its Python __new__ */
static PyObject *FilenoName; /* "fileno", interned once: looking it up is on the per-connection path */

static void unbind_results(void)
{
    size_t i;
    Py_CLEAR(InfoClass);
    for (i = 0; i < INFO_PROTOCOLS; i++) {
        Py_CLEAR(InfoProtocols[i]);
    }
    for (i = 0; i < INFO_FLAGS; i++) {
        Py_CLEAR(InfoFlags[i]);
    }
    Py_CLEAR(InfoInTheClear);
    Py_CLEAR(InfoDecode);
    Py_CLEAR(InfoSaClass);
    for (i = 0; i < INFO_BYTE; i++) {
        Py_CLEAR(InfoIpsecProtocols[i]);
        Py_CLEAR(InfoIpsecModes[i]);
    }
}

/* The value of a type attribute that is a Py_ssize_t (__basicsize__, __dictoffset__...), or -1. */
static Py_ssize_t type_size_attr(PyObject *type, const char *name)
{
    PyObject *value = PyObject_GetAttrString(type, name);
    Py_ssize_t n;
    if (value == NULL) {
        return -1;
    }
    n = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    return n;
}

/* {int value: member} with every value from 0 to 255: 0, or -1 with an exception set. */
static int check_byte_table(PyObject *members, const char *what)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;

    while (PyDict_Next(members, &pos, &key, &value)) {
        long n = PyLong_Check(key) ? PyLong_AsLong(key) : -1;
        if (n < 0 || n >= INFO_BYTE) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "bind_results: %s must map values 0 to 255 to members", what);
            return -1;
        }
    }
    return 0;
}

/* table[value] = member for each pair of a checked {int value: member}. */
static void fill_byte_table(PyObject *members, PyObject **table)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;

    while (PyDict_Next(members, &pos, &key, &value)) {
        long n = PyLong_AsLong(key);
        Py_INCREF(value);
        Py_XDECREF(table[n]);
        table[n] = value;
    }
}

static PyObject *mod_bind_results(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *cls, *protocols, *flags, *in_the_clear, *decode, *sa_cls, *ipsec_protocols, *ipsec_modes;
    Py_ssize_t i;

    if (!PyArg_ParseTuple(args, "OO!O!OOOO!O!:bind_results", &cls, &PyTuple_Type, &protocols, &PyTuple_Type,
                          &flags, &in_the_clear, &decode, &sa_cls, &PyDict_Type, &ipsec_protocols, &PyDict_Type,
                          &ipsec_modes)) {
        return NULL;
    }
    /* SAs and the details are made as tuple.__new__(cls, items) makes them: both must be tuple classes. */
    if (!PyObject_TypeCheck(in_the_clear, &PyTuple_Type) || PyTuple_Size(in_the_clear) != 2 ||
        !PyType_Check(sa_cls) || !PyType_IsSubtype((PyTypeObject *)sa_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "bind_results: in_the_clear must be an IpsecDetails and sa_cls a tuple class");
        return NULL;
    }
    /* query_info() allocates cls and fills the base's fields: cls must add none of its own, nor a __dict__. */
    if (!PyType_Check(cls) || PyObject_IsSubclass(cls, InfoBaseType) != 1 ||
        type_size_attr(cls, "__basicsize__") != (Py_ssize_t)sizeof(InfoObject) ||
        type_size_attr(cls, "__dictoffset__") != 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError,
                        "bind_results: cls must subclass SecurityInfoBase with __slots__ = () and nothing more");
        return NULL;
    }
    if (PyTuple_Size(protocols) != INFO_PROTOCOLS || PyTuple_Size(flags) != INFO_FLAGS ||
        !PyCallable_Check(decode)) {
        PyErr_SetString(PyExc_ValueError,
                        "bind_results: expected 4 protocols, 8 flag values and a callable decoder");
        return NULL;
    }
    /* Everything is checked before the binding in place is dropped: a refused call leaves it working. */
    if (check_byte_table(ipsec_protocols, "ipsec_protocols") < 0 ||
        check_byte_table(ipsec_modes, "ipsec_modes") < 0) {
        return NULL;
    }
    unbind_results();
    Py_INCREF(cls);
    InfoClass = cls;
    for (i = 0; i < INFO_PROTOCOLS; i++) {
        InfoProtocols[i] = PyTuple_GetItem(protocols, i);
        Py_INCREF(InfoProtocols[i]);
    }
    for (i = 0; i < INFO_FLAGS; i++) {
        InfoFlags[i] = PyTuple_GetItem(flags, i);
        Py_INCREF(InfoFlags[i]);
    }
    Py_INCREF(in_the_clear);
    InfoInTheClear = in_the_clear;
    Py_INCREF(decode);
    InfoDecode = decode;
    Py_INCREF(sa_cls);
    InfoSaClass = sa_cls;
    fill_byte_table(ipsec_protocols, InfoIpsecProtocols);
    fill_byte_table(ipsec_modes, InfoIpsecModes);
    Py_RETURN_NONE;
}

/* The value of an exact int (not bool, not a subclass) that fits a long long: 1, or 0 for anything else. */
static int exact_int(PyObject *obj, long long *value)
{
    if (!PyLong_CheckExact(obj)) {
        return 0;
    }
    *value = PyLong_AsLongLong(obj);
    if (*value == -1 && PyErr_Occurred()) {
        PyErr_Clear(); /* too large: the general path says so in its own words */
        return 0;
    }
    return 1;
}

/*
 * The socket handle behind sock when it is plainly given: a non-negative int, or an object whose fileno()
 * returns one. 1 with *fd set; 0 for anything else, including no fileno or one that is not callable (the
 * facade's general path then names the problem, calling fileno() again if it must); -1 when fileno()
 * raised something else, which the general path would let through too.
 */
static int plain_socket_handle(PyObject *sock, secsock_fd *fd)
{
    long long value;
    PyObject *handle;
    int plain;

    if (!exact_int(sock, &value)) {
        /* Called as a method (no bound method object is made): this is on every accepted connection. */
        handle = PyObject_CallMethodObjArgs(sock, FilenoName, NULL);
        if (handle == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
        plain = exact_int(handle, &value);
        Py_DECREF(handle);
        if (!plain) {
            return 0;
        }
    }
    if (value < 0) {
        return 0; /* a closed socket (fileno() is -1) or a negative handle */
    }
    *fd = (secsock_fd)value;
    return 1;
}

/* A member from a byte table, or the plain int where the table names no member (never a guess). */
static PyObject *byte_member(PyObject **table, uint8_t value)
{
    if (table[value] != NULL) {
        Py_INCREF(table[value]);
        return table[value];
    }
    return PyLong_FromLong((long)value);
}

/* An algorithm name, or None for "" (as the facade's decoder says `name or None`). */
static PyObject *alg_or_none(const char *field)
{
    if (field[0] == '\0') {
        Py_INCREF(Py_None);
        return Py_None;
    }
    return alg_name(field);
}

/* tuple.__new__(cls, items): a NamedTuple of the bound classes. Steals items. */
static PyObject *named_tuple(PyObject *cls, PyObject *items)
{
    PyObject *obj = items != NULL ? PyObject_CallFunctionObjArgs(TupleNew, cls, items, NULL) : NULL;
    Py_XDECREF(items);
    return obj;
}

/* SecurityAssociation(protocol, mode, spi, reqid, encryption, integrity, aead), as the facade's _sa(). */
static PyObject *sa_object(const secsock_sa *sa)
{
    PyObject *items = Py_BuildValue("(NNkkNNN)", byte_member(InfoIpsecProtocols, sa->proto),
                                    byte_member(InfoIpsecModes, sa->mode), (unsigned long)sa->spi,
                                    (unsigned long)sa->reqid, alg_or_none(sa->encryption),
                                    alg_or_none(sa->integrity), alg_or_none(sa->aead));
    return named_tuple(InfoSaClass, items);
}

/* IpsecDetails(outbound, inbound); the shared "in the clear" one when neither direction has an SA. */
static PyObject *details_object(const secsock_result *r)
{
    PyObject *outbound, *inbound;

    if (r->outbound.count == 0 && r->inbound.count == 0) {
        Py_INCREF(InfoInTheClear);
        return InfoInTheClear;
    }
    outbound = direction_tuple(&r->outbound, sa_object);
    inbound = outbound != NULL ? direction_tuple(&r->inbound, sa_object) : NULL;
    if (inbound == NULL) {
        Py_XDECREF(outbound);
        return NULL;
    }
    return named_tuple((PyObject *)Py_TYPE(InfoInTheClear), Py_BuildValue("(NN)", outbound, inbound));
}

/*
 * The bound SecurityInfo, built here for the answers the tables cover (the per-connection case: no tokens,
 * no IPsec2 fields); the facade's decoder for the rest. Consumes r's tokens.
 */
static PyObject *info_from_result(secsock_result *r)
{
    InfoObject *info;
    PyObject *raw, *decoded;
    int plain = r->peer_application_token == 0 && r->peer_machine_token == 0 && !r->has_ipsec2 &&
                r->protocol < INFO_PROTOCOLS && r->flags < INFO_FLAGS;

    if (!plain) {
        raw = result_to_tuple(r); /* closes the tokens if it fails; the decoder owns them once it runs */
        if (raw == NULL) {
            return NULL;
        }
        decoded = PyObject_CallFunctionObjArgs(InfoDecode, raw, NULL);
        Py_DECREF(raw);
        return decoded;
    }
    info = (InfoObject *)PyType_GenericAlloc((PyTypeObject *)InfoClass, 0);
    if (info == NULL) {
        return NULL;
    }
    info->protocol = InfoProtocols[r->protocol];
    Py_INCREF(info->protocol);
    info->flags = InfoFlags[r->flags];
    Py_INCREF(info->flags);
    if (r->has_ipsec_detail) {
        info->ipsec = details_object(r);
        if (info->ipsec == NULL) {
            Py_DECREF(info);
            return NULL;
        }
    }
    return (PyObject *)info;
}

/*
 * query_info(sock, peer, token_access, ipsec2): the facade's query() in one call, for the case a server meets
 * on every accepted connection: sock alone (peer None, token_access 0, ipsec2 False). Answers the finished
 * SecurityInfo, or None, without any system call, for every other argument: the facade's general path then
 * checks them and names what is wrong.
 */
static PyObject *mod_query_info(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *sock, *peer, *access_obj, *ipsec2;
    long long access;
    secsock_query_request req;
    secsock_result result;
    secsock_error err;
    int rc;

    if (!PyArg_UnpackTuple(args, "query_info", 4, 4, &sock, &peer, &access_obj, &ipsec2)) {
        return NULL;
    }
    if (InfoClass == NULL || peer != Py_None || ipsec2 != Py_False || !exact_int(access_obj, &access) ||
        access != 0) {
        Py_RETURN_NONE;
    }
    memset(&req, 0, sizeof(req));
    rc = plain_socket_handle(sock, &req.sock);
    if (rc <= 0) {
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_query(&req, &result, &err); /* zeroes result and clears err first, on every path */
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return info_from_result(&result);
}

/* ---- PendingQuery -------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    secsock_pending *pending; /* owned; NULL once closed */
    int has_result;           /* a query: result() decodes; a set/delete call: result() returns None */
    int waiters;              /* threads inside wait() with the GIL released */
    int in_result;            /* a thread is inside result() with the GIL released */
} PendingObject;

static PyObject *PendingType; /* heap type, created at import */

static PendingObject *pending_checked(PyObject *self)
{
    PendingObject *p = (PendingObject *)self;
    if (p->pending == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed pending query");
        return NULL;
    }
    return p;
}

static void pending_release(PendingObject *p)
{
    secsock_pending *pending = p->pending;

    p->pending = NULL;
    if (pending != NULL) {
        /* May cancel and wait until the system is done with the OVERLAPPED and buffers: never with the GIL. */
        Py_BEGIN_ALLOW_THREADS
        secsock_pending_free(pending);
        Py_END_ALLOW_THREADS
    }
}

static void Pending_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);

    pending_release((PendingObject *)self);
    tp_free(self);
    Py_DECREF(type);
}

static PyObject *Pending_done(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PendingObject *p = pending_checked(self);
    if (p == NULL) {
        return NULL;
    }
    return PyBool_FromLong(secsock_pending_done(p->pending));
}

static PyObject *Pending_wait(PyObject *self, PyObject *args)
{
    long long timeout_ms;
    secsock_error err;
    int rc;
    PendingObject *p = pending_checked(self);

    if (p == NULL || !PyArg_ParseTuple(args, "L", &timeout_ms)) {
        return NULL;
    }
    secsock_error_clear(&err);
    /* Several threads may wait at once; close() is refused meanwhile, so the pending outlives every waiter. */
    p->waiters++;
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_pending_wait(p->pending, (int64_t)timeout_ms, &err);
    Py_END_ALLOW_THREADS
    p->waiters--;
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return PyBool_FromLong(rc);
}

static PyObject *Pending_result(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    secsock_result result;
    secsock_error err;
    int rc;
    PendingObject *p = pending_checked(self);

    if (p == NULL) {
        return NULL;
    }
    if (p->in_result) {
        /* The backend may be re-issuing the call with a larger buffer: one taker at a time. */
        PyErr_SetString(PyExc_RuntimeError, "result() is already running in another thread");
        return NULL;
    }
    memset(&result, 0, sizeof(result));
    secsock_error_clear(&err);
    p->in_result = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_pending_result(p->pending, p->has_result ? &result : NULL, &err);
    Py_END_ALLOW_THREADS
    p->in_result = 0;
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    if (!p->has_result) {
        Py_RETURN_NONE;
    }
    return result_to_tuple(&result);
}

static PyObject *Pending_cancel(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    secsock_error err;
    int rc;
    PendingObject *p = pending_checked(self);

    if (p == NULL) {
        return NULL;
    }
    secsock_error_clear(&err);
    rc = secsock_pending_cancel(p->pending, &err);
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return PyBool_FromLong(rc);
}

static PyObject *Pending_event(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    uint64_t event;
    PendingObject *p = pending_checked(self);

    if (p == NULL) {
        return NULL;
    }
    event = secsock_pending_event(p->pending);
    if (event == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)event);
}

static PyObject *Pending_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PendingObject *p = (PendingObject *)self;

    if (p->waiters || p->in_result) {
        PyErr_SetString(PyExc_RuntimeError, "cannot close a pending query while another thread waits on it");
        return NULL;
    }
    pending_release(p);
    Py_RETURN_NONE;
}

static PyObject *Pending_closed(PyObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((PendingObject *)self)->pending == NULL);
}

static PyMethodDef Pending_methods[] = {
    {"done", Pending_done, METH_NOARGS, "True once the system is done with the query."},
    {"wait", Pending_wait, METH_VARARGS, "wait(timeout_ms) -> bool; a negative timeout waits forever."},
    {"result", Pending_result, METH_NOARGS, "Wait, negotiate the buffer size if needed, and decode."},
    {"cancel", Pending_cancel, METH_NOARGS, "Ask the system to cancel; True if a cancel was requested."},
    {"event", Pending_event, METH_NOARGS, "The completion event handle, or None where there is none."},
    {"close", Pending_close, METH_NOARGS, "Cancel if in flight, wait for the system, free everything."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Pending_getset[] = {
    {"closed", Pending_closed, NULL, "True once close() has run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Pending_slots[] = {
    {Py_tp_dealloc, (void *)Pending_dealloc},
    {Py_tp_methods, Pending_methods},
    {Py_tp_getset, Pending_getset},
    {Py_tp_doc, "A query in flight, owned by secsock.PendingQuery."},
    {0, NULL},
};

static PyType_Spec Pending_spec = {
    "secsock._secsock.Pending",
    sizeof(PendingObject),
    0,
    Py_TPFLAGS_DEFAULT,
    Pending_slots,
};

/* ---- module functions ---------------------------------------------------------------------------------- */

static PyObject *mod_query(PyObject *Py_UNUSED(module), PyObject *args)
{
    secsock_query_request req;
    secsock_result result;
    secsock_error err;
    int rc;

    if (parse_request(args, &req) < 0) {
        return NULL;
    }
    memset(&result, 0, sizeof(result));
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_query(&req, &result, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return result_to_tuple(&result);
}

/*
 * A Pending object for a call the backend is about to issue. It is allocated before the call, so nothing can
 * fail once the system owns the OVERLAPPED; pending_attach() then hands it the backend's pending or, if the
 * call could not be issued, frees it and raises.
 */
static PendingObject *pending_alloc(int has_result)
{
    PendingObject *obj = (PendingObject *)PyType_GenericAlloc((PyTypeObject *)PendingType, 0);
    if (obj != NULL) {
        obj->pending = NULL;
        obj->has_result = has_result;
        obj->waiters = 0;
        obj->in_result = 0;
    }
    return obj;
}

static PyObject *pending_attach(PendingObject *obj, secsock_pending *pending, const secsock_error *err)
{
    if (pending == NULL) {
        Py_DECREF(obj);
        return raise_backend_error(err);
    }
    obj->pending = pending;
    return (PyObject *)obj;
}

static PyObject *mod_begin_query(PyObject *Py_UNUSED(module), PyObject *args)
{
    secsock_query_request req;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;

    if (parse_request(args, &req) < 0 || (obj = pending_alloc(1)) == NULL) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_query_begin(&req, &err);
    Py_END_ALLOW_THREADS
    return pending_attach(obj, pending, &err);
}

/* ---- the rest of the family --------------------------------------------------------------------------- */

/* UTF-8 of a str (NULL for None) kept alive by *holder; a NUL inside is refused, naming the argument. */
static int utf8_arg(PyObject *obj, const char *name, PyObject **holder, const char **out)
{
    *holder = NULL;
    *out = NULL;
    if (obj == Py_None) {
        return 0;
    }
    *holder = PyUnicode_AsUTF8String(obj);
    if (*holder == NULL) {
        return -1;
    }
    *out = PyBytes_AsString(*holder);
    if (*out == NULL || (Py_ssize_t)strlen(*out) != PyBytes_Size(*holder)) {
        Py_CLEAR(*holder);
        PyErr_Format(PyExc_ValueError, "%s: must not contain a NUL character", name);
        return -1;
    }
    return 0;
}

/* Overwrite a secret's temporary UTF-8 copy before it is freed. */
static void wipe_and_release(PyObject **holder)
{
    if (*holder != NULL) {
        char *bytes = PyBytes_AsString(*holder);
        if (bytes != NULL) {
            volatile char *p = bytes;
            Py_ssize_t i, n = PyBytes_Size(*holder);
            for (i = 0; i < n; i++) {
                p[i] = 0;
            }
        }
        Py_CLEAR(*holder);
    }
}

static int guid_arg(PyObject *obj, uint8_t guid[16])
{
    char *bytes;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(obj, &bytes, &len) < 0) {
        return -1;
    }
    if (len != 16) {
        PyErr_SetString(PyExc_ValueError, "policy key: a GUID is 16 bytes");
        return -1;
    }
    memcpy(guid, bytes, 16);
    return 0;
}

/* set_security_begin(fd, None | (is_ipsec, protocol, security_flags, ipsec_flags, mm_key, qm_key, user,
   domain, password)) -> Pending */
static PyObject *mod_set_security_begin(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *fd_obj, *settings_obj, *mm, *qm, *user_obj, *domain_obj, *password_obj;
    PyObject *user = NULL, *domain = NULL, *password = NULL;
    secsock_settings settings;
    secsock_fd fd;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;
    int is_ipsec;
    unsigned long protocol, security_flags, ipsec_flags;

    memset(&settings, 0, sizeof(settings));
    if (!PyArg_ParseTuple(args, "OO", &fd_obj, &settings_obj) || parse_fd(fd_obj, &fd) < 0) {
        return NULL;
    }
    if (settings_obj != Py_None) {
        if (!PyArg_ParseTuple(settings_obj, "pkkkOOOOO", &is_ipsec, &protocol, &security_flags, &ipsec_flags, &mm,
                              &qm, &user_obj, &domain_obj, &password_obj) ||
            guid_arg(mm, settings.mm_policy_key) < 0 || guid_arg(qm, settings.qm_policy_key) < 0 ||
            utf8_arg(user_obj, "user", &user, &settings.user) < 0 ||
            utf8_arg(domain_obj, "domain", &domain, &settings.domain) < 0 ||
            utf8_arg(password_obj, "password", &password, &settings.password) < 0) {
            goto fail;
        }
        settings.is_ipsec = is_ipsec;
        settings.protocol = (uint32_t)protocol;
        settings.security_flags = (uint32_t)security_flags;
        settings.ipsec_flags = (uint32_t)ipsec_flags;
    }
    if ((obj = pending_alloc(0)) == NULL) {
        goto fail;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_set_security_begin(fd, settings_obj != Py_None ? &settings : NULL, &err);
    Py_END_ALLOW_THREADS
    /* The backend packed its own copy: ours is no longer needed by anyone. */
    wipe_and_release(&password);
    Py_XDECREF(user);
    Py_XDECREF(domain);
    return pending_attach(obj, pending, &err);

fail:
    wipe_and_release(&password);
    Py_XDECREF(user);
    Py_XDECREF(domain);
    return NULL;
}

/* set_peer_target_name_begin(fd, protocol, peer | None, name) -> Pending */
static PyObject *mod_set_peer_target_name_begin(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *fd_obj, *peer_obj, *name_obj, *name_holder = NULL;
    unsigned long protocol;
    const char *name;
    secsock_fd fd;
    secsock_peer peer;
    int has_peer;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;

    if (!PyArg_ParseTuple(args, "OkOU", &fd_obj, &protocol, &peer_obj, &name_obj) || parse_fd(fd_obj, &fd) < 0 ||
        parse_peer(peer_obj, &peer, &has_peer) < 0 || utf8_arg(name_obj, "name", &name_holder, &name) < 0) {
        return NULL;
    }
    if ((obj = pending_alloc(0)) == NULL) {
        Py_DECREF(name_holder);
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_set_peer_target_name_begin(fd, (uint32_t)protocol, has_peer ? &peer : NULL, name, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(name_holder);
    return pending_attach(obj, pending, &err);
}

/* delete_peer_target_name_begin(fd, peer) -> Pending */
static PyObject *mod_delete_peer_target_name_begin(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *fd_obj, *peer_obj;
    secsock_fd fd;
    secsock_peer peer;
    int has_peer;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;

    if (!PyArg_ParseTuple(args, "OO", &fd_obj, &peer_obj) || parse_fd(fd_obj, &fd) < 0 ||
        parse_peer(peer_obj, &peer, &has_peer) < 0) {
        return NULL;
    }
    if (!has_peer) {
        PyErr_SetString(PyExc_ValueError, "peer: required, the address whose target name is deleted");
        return NULL;
    }
    if ((obj = pending_alloc(0)) == NULL) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_delete_peer_target_name_begin(fd, &peer, &err);
    Py_END_ALLOW_THREADS
    return pending_attach(obj, pending, &err);
}

/* impersonate_peer(fd, peer | None): the calling OS thread impersonates the peer until revert. */
static PyObject *mod_impersonate_peer(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *fd_obj, *peer_obj;
    secsock_fd fd;
    secsock_peer peer;
    int has_peer, rc;
    secsock_error err;

    if (!PyArg_ParseTuple(args, "OO", &fd_obj, &peer_obj) || parse_fd(fd_obj, &fd) < 0 ||
        parse_peer(peer_obj, &peer, &has_peer) < 0) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_impersonate_peer(fd, has_peer ? &peer : NULL, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_revert_impersonation(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    secsock_error err;

    secsock_error_clear(&err);
    if (secsock_revert_impersonation(&err) < 0) {
        return raise_backend_error(&err);
    }
    Py_RETURN_NONE;
}

static int token_arg(PyObject *obj, uint64_t *token)
{
    unsigned long long value = PyLong_AsUnsignedLongLong(obj);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (value == 0) {
        PyErr_SetString(PyExc_ValueError, "handle: 0 is not a token handle");
        return -1;
    }
    *token = (uint64_t)value;
    return 0;
}

static PyObject *account_to_tuple(const secsock_account *account)
{
    /* Bounded reads: the backend fills fixed-size fields. */
    const char *sid_end = memchr(account->sid, '\0', sizeof(account->sid));
    const char *name_end = memchr(account->account, '\0', sizeof(account->account));
    Py_ssize_t sid_len = sid_end ? (Py_ssize_t)(sid_end - account->sid) : (Py_ssize_t)sizeof(account->sid);
    Py_ssize_t name_len =
        name_end ? (Py_ssize_t)(name_end - account->account) : (Py_ssize_t)sizeof(account->account);
    return Py_BuildValue("(s#s#)", account->sid, sid_len, account->account, name_len);
}

static PyObject *mod_token_user(PyObject *Py_UNUSED(module), PyObject *arg)
{
    uint64_t token;
    secsock_account user;
    secsock_error err;
    int rc;

    if (token_arg(arg, &token) < 0) {
        return NULL;
    }
    memset(&user, 0, sizeof(user));
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS /* LookupAccountSid may ask a domain controller */
    rc = secsock_token_user(token, &user, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return account_to_tuple(&user);
}

static PyObject *mod_token_groups(PyObject *Py_UNUSED(module), PyObject *arg)
{
    uint64_t token;
    secsock_account *groups = NULL;
    size_t count = 0, i;
    secsock_error err;
    PyObject *tuple;
    int rc;

    if (token_arg(arg, &token) < 0) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_token_groups(token, &groups, &count, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        secsock_free(groups);
        return raise_backend_error(&err);
    }
    tuple = PyTuple_New((Py_ssize_t)count);
    for (i = 0; tuple != NULL && i < count; i++) {
        PyObject *item = account_to_tuple(&groups[i]);
        if (item == NULL) {
            Py_CLEAR(tuple);
            break;
        }
        PyTuple_SetItem(tuple, (Py_ssize_t)i, item);
    }
    secsock_free(groups);
    return tuple;
}

static PyObject *mod_token_is_member(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *token_obj, *name_obj, *holder = NULL;
    const char *name;
    uint64_t token;
    int member = 0, rc;
    secsock_error err;

    if (!PyArg_ParseTuple(args, "OU", &token_obj, &name_obj) || token_arg(token_obj, &token) < 0 ||
        utf8_arg(name_obj, "sid_or_account", &holder, &name) < 0) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_token_is_member(token, name, &member, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(holder);
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return PyBool_FromLong(member);
}

static PyObject *mod_close_token(PyObject *Py_UNUSED(module), PyObject *arg)
{
    secsock_error err;
    unsigned long long handle = PyLong_AsUnsignedLongLong(arg);

    if (handle == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (handle == 0) {
        PyErr_SetString(PyExc_ValueError, "handle: 0 is not a token handle");
        return NULL;
    }
    secsock_error_clear(&err);
    if (secsock_token_close((uint64_t)handle, &err) < 0) {
        return raise_backend_error(&err);
    }
    Py_RETURN_NONE;
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
    {NULL, NULL, 0, NULL},
};

static void module_free(void *Py_UNUSED(module))
{
    Py_CLEAR(PendingType);
    unbind_results();
    Py_CLEAR(InfoBaseType);
    Py_CLEAR(FilenoName);
    Py_CLEAR(TupleNew);
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
    PendingType = PyType_FromSpec(&Pending_spec);
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
    FilenoName = PyUnicode_InternFromString("fileno");
    TupleNew = FilenoName != NULL ? PyObject_GetAttrString((PyObject *)&PyTuple_Type, "__new__") : NULL;
    InfoBaseType = TupleNew != NULL ? PyType_FromSpec(&Info_spec) : NULL;
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

/* The result types: raw result tuples, SecurityInfoBase, the tables bind_results binds, query and query_info. */
#include "module.h"

/* ---- results ------------------------------------------------------------------------------------------- */

/* An algorithm name from a fixed-size field; bounded even if the backend forgot the terminator. */
static PyObject *alg_name(const char *field)
{
    const char *end = memchr(field, '\0', SECSOCK_ALG_NAME_MAX);
    Py_ssize_t len = end != NULL ? (Py_ssize_t)(end - field) : SECSOCK_ALG_NAME_MAX;
    return PyUnicode_DecodeASCII(field, len, "replace");
}

/* (proto, mode, spi, reqid, encryption, integrity, aead) with "" for an absent algorithm. */
static PyObject *sa_raw(const module_state *Py_UNUSED(st), const secsock_sa *sa)
{
    /* "N" steals the new references, and Py_BuildValue releases them if it fails. */
    return Py_BuildValue("(iikkNNN)", (int)sa->proto, (int)sa->mode, (unsigned long)sa->spi,
                         (unsigned long)sa->reqid, alg_name(sa->encryption), alg_name(sa->integrity),
                         alg_name(sa->aead));
}

/* One direction's SAs, outermost first, each made by make_sa (sa_raw, or sa_object for query_info). */
static PyObject *direction_tuple(const module_state *st, const secsock_direction *dir,
                                 PyObject *(*make_sa)(const module_state *, const secsock_sa *))
{
    size_t count = dir->count <= SECSOCK_MAX_SAS ? dir->count : SECSOCK_MAX_SAS;
    PyObject *tuple = PyTuple_New((Py_ssize_t)count);
    size_t i;

    for (i = 0; tuple != NULL && i < count; i++) {
        PyObject *item = make_sa(st, &dir->sas[i]);
        if (item == NULL || PyTuple_SetItem(tuple, (Py_ssize_t)i, item) < 0) { /* SetItem steals item */
            Py_CLEAR(tuple);
        }
    }
    return tuple;
}

/*
 * SecurityInfo.reason (issue 14 item 8): "outbound: ...; inbound: ..." from the backend's reason codes, or
 * None where it gives none (Windows). Each of the few combinations is made once and kept: the answer is built
 * on every accepted connection, in st->reasons (st NULL: made anew, not kept). A new reference, or NULL with an
 * exception set.
 */
static const char *const reason_texts[SECSOCK_REASON_COUNT] = {
    "",
    "no XFRM policy selects the flow",
    "the policy allows the flow without IPsec",
    "the policy blocks the flow",
    "no SA fits a template the policy requires (none exists yet, or its addresses, reqid, mark, if_id or "
    "selector do not fit the flow)",
    "no ESP or AH SA protects the flow for sure (the policy's ESP/AH templates are optional, or it has "
    "IPComp only)",
    "protected by SAs that encrypt",
    "protected, but an SA it uses or accepts does not encrypt or cannot be read (AH, a null cipher, "
    "AES-GMAC, a cipher secsock does not know, an SA it could not parse)",
    "not decidable here: a policy with a mark selects the flow (or, inbound, only SAs with a mark fit its "
    "template), and the kernel compares the packet's mark (inbound skb->mark, outbound maybe set by a VTI key "
    "or netfilter), not the socket's",
    "the SA the kernel picks for a template is an inbound one (XFRMA_SA_DIR): the kernel drops the flow",
    "XFRM is disabled for the flow (disable_xfrm outbound, disable_policy inbound: set for all interfaces, "
    "on the device the flow leaves by, or on loopback, which the flow runs over)",
    "not decidable here: policies of the same priority that differ select the flow, and which one the kernel "
    "uses depends on its list order, which an update changes and the dump does not show",
    "not decidable here: a selector that names a device selects the flow, and which device the kernel "
    "compares for it (inbound loopback or a VRF's master, outbound a VRF's slave or the device a UDP socket "
    "may choose per message) could not be told",
    "not decidable here: SAs that differ could each be the one the kernel picks for a template (added in the "
    "same second and as little dying, one toward any source address next to one from this flow's or from "
    "another source, or one whose lifetime limit fell due, or that was updated, in the last seconds), and which one "
    "it takes depends on the order of its hash chains, which the dump does not show, or on whether its timer has "
    "run yet",
    "not decidable here: the device the socket sends by decides (whether the flow leaves by an XFRM "
    "interface, whose if_id policies then apply, or whether the peer is reached over loopback), and it cannot "
    "be read (a device an IPv4 UDP message's IP_PKTINFO names, an unbound UDPv6 socket's IPV6_PKTINFO, a "
    "multicast peer's IP_MULTICAST_IF, the slave a socket bound to a VRF master sends by)",
    "not decidable here: a device of the namespace has disable_policy (inbound) or disable_xfrm (outbound) "
    "set, the kernel skips XFRM for packets that arrive (or, toward a multicast group, leave) by it, and "
    "which device the flow's packets use could not be told",
    "not decidable here: a tunnel template's source address is any, so the kernel uses the route's preferred "
    "source toward the gateway (xfrm_get_saddr), which is not read here, and SAs from specific source addresses "
    "that answer differently may be the ones it takes (or none, and it waits for a key manager)",
    "not decidable here: SAs that protect differently fit a template, and from Linux 6.12 the kernel first "
    "uses an SA it cached for the policy (the one it used before, an older one after a rekey, until that SA is "
    "deleted), which the dump does not show",
    "not decidable here: a per-CPU SA (XFRMA_SA_PCPU: the sending CPU decides), a packet-offload SA "
    "(XFRMA_OFFLOAD_DEV: software policies skip it, an offload policy takes only such) or an SA the dump could "
    "not read fits a template",
    "not decidable here: the connection may carry its data over other paths (further MPTCP subflows, a "
    "multihomed SCTP association's other addresses), from and to other addresses and by other devices than "
    "the one the socket names, which the policies may treat otherwise (a host without any XFRM policy for "
    "the direction answers for all of them)",
    "not decidable here: a policy or SA with a security label (XFRMA_SEC_CTX) may apply, and whether the "
    "kernel's LSM (SELinux) matches its label with the flow's, which is not read here, decides",
};
static PyObject *reason_object(module_state *st, const secsock_result *r)
{
    PyObject **slot;

    if (r->reason_out == SECSOCK_REASON_NONE || r->reason_in == SECSOCK_REASON_NONE ||
        r->reason_out >= SECSOCK_REASON_COUNT || r->reason_in >= SECSOCK_REASON_COUNT) {
        Py_RETURN_NONE;
    }
    if (st == NULL) {
        return PyUnicode_FromFormat("outbound: %s; inbound: %s", reason_texts[r->reason_out],
                                    reason_texts[r->reason_in]);
    }
    slot = &st->reasons[r->reason_out][r->reason_in];
    if (*slot == NULL) {
        *slot = reason_object(NULL, r);
        if (*slot == NULL) {
            return NULL;
        }
    }
    Py_INCREF(*slot);
    return *slot;
}

/*
 * (protocol, flags, application_token, machine_token, ipsec2, ipsec, reason) for the facade. The token handles
 * move into the tuple as ints; if building it fails they are closed here, so no path leaks them.
 */
PyObject *result_to_tuple(module_state *st, secsock_result *r)
{
    PyObject *ipsec2 = NULL, *detail = NULL, *outbound = NULL, *inbound = NULL, *tuple = NULL, *reason;

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
        outbound = direction_tuple(st, &r->outbound, sa_raw);
        inbound = outbound != NULL ? direction_tuple(st, &r->inbound, sa_raw) : NULL;
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
    reason = reason_object(st, r);
    if (reason == NULL) {
        Py_DECREF(detail);
        goto fail;
    }
    /* "N" steals reason, and Py_BuildValue releases it if it fails. */
    tuple = Py_BuildValue("(kkKKOON)", (unsigned long)r->protocol, (unsigned long)r->flags,
                          (unsigned long long)r->peer_application_token,
                          (unsigned long long)r->peer_machine_token, ipsec2, detail, reason);
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
    PyObject *reason;
} InfoObject;

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
    INFO_FIELD(reason),
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
    Py_VISIT(o->reason);
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
    Py_CLEAR(o->reason);
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

PyType_Spec Info_spec = {
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
 * takes its general path. They live in the module's state (module_state.info_*): each interpreter's facade
 * binds its own classes to its own module object.
 */
static void forget_details(module_state *st);

static void unbind_results(module_state *st)
{
    size_t i;
    forget_details(st); /* its objects were made from the tables dropped here */
    Py_CLEAR(st->info_class);
    for (i = 0; i < INFO_PROTOCOLS; i++) {
        Py_CLEAR(st->info_protocols[i]);
    }
    for (i = 0; i < INFO_FLAGS; i++) {
        Py_CLEAR(st->info_flags[i]);
    }
    Py_CLEAR(st->info_in_the_clear);
    Py_CLEAR(st->info_decode);
    Py_CLEAR(st->info_sa_class);
    for (i = 0; i < INFO_BYTE; i++) {
        Py_CLEAR(st->info_ipsec_protocols[i]);
        Py_CLEAR(st->info_ipsec_modes[i]);
    }
}

int results_traverse(module_state *st, visitproc visit, void *arg)
{
    size_t i, j;
    Py_VISIT(st->info_class);
    for (i = 0; i < INFO_PROTOCOLS; i++) {
        Py_VISIT(st->info_protocols[i]);
    }
    for (i = 0; i < INFO_FLAGS; i++) {
        Py_VISIT(st->info_flags[i]);
    }
    Py_VISIT(st->info_in_the_clear);
    Py_VISIT(st->info_decode);
    Py_VISIT(st->info_sa_class);
    for (i = 0; i < INFO_BYTE; i++) {
        Py_VISIT(st->info_ipsec_protocols[i]);
        Py_VISIT(st->info_ipsec_modes[i]);
    }
    for (i = 0; i < SECSOCK_REASON_COUNT; i++) {
        for (j = 0; j < SECSOCK_REASON_COUNT; j++) {
            Py_VISIT(st->reasons[i][j]);
        }
    }
    for (i = 0; i < DETAILS_CACHE; i++) {
        Py_VISIT(st->details_cache[i].details);
    }
    return 0;
}

void results_clear(module_state *st)
{
    size_t i, j;
    unbind_results(st);
    for (i = 0; i < SECSOCK_REASON_COUNT; i++) {
        for (j = 0; j < SECSOCK_REASON_COUNT; j++) {
            Py_CLEAR(st->reasons[i][j]);
        }
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

PyObject *mod_bind_results(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module);
    PyObject *cls, *protocols, *flags, *in_the_clear, *decode, *sa_cls, *ipsec_protocols, *ipsec_modes;
    Py_ssize_t i;

    if (st == NULL) {
        return NULL;
    }
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
    if (!PyType_Check(cls) || PyObject_IsSubclass(cls, st->info_base_type) != 1 ||
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
    unbind_results(st);
    Py_INCREF(cls);
    st->info_class = cls;
    for (i = 0; i < INFO_PROTOCOLS; i++) {
        st->info_protocols[i] = PyTuple_GetItem(protocols, i);
        Py_INCREF(st->info_protocols[i]);
    }
    for (i = 0; i < INFO_FLAGS; i++) {
        st->info_flags[i] = PyTuple_GetItem(flags, i);
        Py_INCREF(st->info_flags[i]);
    }
    Py_INCREF(in_the_clear);
    st->info_in_the_clear = in_the_clear;
    Py_INCREF(decode);
    st->info_decode = decode;
    Py_INCREF(sa_cls);
    st->info_sa_class = sa_cls;
    fill_byte_table(ipsec_protocols, st->info_ipsec_protocols);
    fill_byte_table(ipsec_modes, st->info_ipsec_modes);
    /* Again, now the new tables are in place: an entry stored while the old ones were dropped (a finalizer
     * run by a release above answering on another thread) was made from them. */
    forget_details(st);
    Py_RETURN_NONE;
}

/* The value of an exact int (not bool, not a subclass) that fits a long long: 1, or 0 for anything else. */
int exact_int(PyObject *obj, long long *value)
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
static int plain_socket_handle(const module_state *st, PyObject *sock, secsock_fd *fd)
{
    long long value;
    PyObject *handle;
    int plain;

    if (!exact_int(sock, &value)) {
        /* Called as a method (no bound method object is made): this is on every accepted connection. */
        handle = PyObject_CallMethodObjArgs(sock, st->fileno_name, NULL);
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
static PyObject *byte_member(PyObject *const *table, uint8_t value)
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
static PyObject *named_tuple(const module_state *st, PyObject *cls, PyObject *items)
{
    PyObject *obj = items != NULL ? PyObject_CallFunctionObjArgs(st->tuple_new, cls, items, NULL) : NULL;
    Py_XDECREF(items);
    return obj;
}

/* SecurityAssociation(protocol, mode, spi, reqid, encryption, integrity, aead), as the facade's _sa(). */
static PyObject *sa_object(const module_state *st, const secsock_sa *sa)
{
    PyObject *items = Py_BuildValue("(NNkkNNN)", byte_member(st->info_ipsec_protocols, sa->proto),
                                    byte_member(st->info_ipsec_modes, sa->mode), (unsigned long)sa->spi,
                                    (unsigned long)sa->reqid, alg_or_none(sa->encryption),
                                    alg_or_none(sa->integrity), alg_or_none(sa->aead));
    return named_tuple(st, st->info_sa_class, items);
}

/*
 * The IpsecDetails of recent secured answers (issue 14, speed): building two SecurityAssociations and their
 * algorithm names was most of what a secured answer cost over a clear one, and every connection between the
 * same two hosts gets the same SAs. An IpsecDetails, its tuples, SAs and strings are immutable and made only
 * from the seam's SA records and the bound tables, so an entry is reused exactly when every record of both
 * directions is equal to its key (field by field, names included); a rekey, a new or a deleted SA changes the
 * records, and so misses. bind_results empties the cache (the tables the objects came from change). The cache
 * is the module's state (module_state.details_cache), so each interpreter's answers hold its own objects.
 * Direct-mapped by a hash of the records, 256 slots: a collision replaces the older entry, so a server talking
 * to ~20 peers at once already has even odds that two of them share a slot and take turns missing (a miss costs
 * what every secured answer cost before: the benchmark measures both). A key holds only the SAs answered.
 * Touched only with the GIL held; the module declares it needs the GIL (Py_mod_gil) on free-threaded builds.
 * A miss's allocations can run the collector and so finalizers, which may let another thread bind new tables
 * or fill the same slot: details_generation tells the miss its objects are from old tables (it stores
 * nothing), and an entry is replaced key and object first, the old one released last (Py_XSETREF's order).
 */
typedef char details_cache_is_a_power_of_two[(DETAILS_CACHE & (DETAILS_CACHE - 1)) == 0 ? 1 : -1];

/* Empties every slot (a release may run a finalizer: each slot is emptied before its object goes). */
static void forget_details(module_state *st)
{
    size_t i;

    st->details_generation++; /* a miss under way stores nothing */
    for (i = 0; i < DETAILS_CACHE; i++) {
        details_entry *e = &st->details_cache[i];
        PyObject *details = e->details;
        secsock_sa *sas = e->sas;

        e->details = NULL;
        e->sas = NULL;
        e->outbound = e->inbound = 0;
        PyMem_Free(sas);
        Py_XDECREF(details);
    }
}

static size_t direction_count(const secsock_direction *dir)
{
    return dir->count <= SECSOCK_MAX_SAS ? dir->count : SECSOCK_MAX_SAS;
}

static uint32_t details_hash(const secsock_result *r)
{
    const secsock_direction *dirs[2] = {&r->outbound, &r->inbound};
    uint32_t h = 2166136261u;
    size_t d, i;

    for (d = 0; d < 2; d++) {
        size_t n = direction_count(dirs[d]);
        h = (h ^ (uint32_t)n) * 16777619u;
        for (i = 0; i < n; i++) {
            const secsock_sa *sa = &dirs[d]->sas[i];
            h = (h ^ sa->spi) * 16777619u;
            h = (h ^ sa->reqid) * 16777619u;
            h = (h ^ ((uint32_t)sa->proto << 8 | sa->mode)) * 16777619u;
        }
    }
    return h ^ (h >> 16);
}

/* Every field the SA object is made of: equal records make equal objects (alg_name reads the same bytes). */
static int sa_same(const secsock_sa *a, const secsock_sa *b)
{
    return a->proto == b->proto && a->mode == b->mode && a->spi == b->spi && a->reqid == b->reqid &&
           strncmp(a->encryption, b->encryption, SECSOCK_ALG_NAME_MAX) == 0 &&
           strncmp(a->integrity, b->integrity, SECSOCK_ALG_NAME_MAX) == 0 &&
           strncmp(a->aead, b->aead, SECSOCK_ALG_NAME_MAX) == 0;
}

static int sas_same(const secsock_sa *a, const secsock_sa *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!sa_same(&a[i], &b[i])) {
            return 0;
        }
    }
    return 1;
}

/* The entry holds IpsecDetails for exactly these SAs. */
static int entry_matches(const details_entry *e, const secsock_result *r)
{
    size_t n_out = direction_count(&r->outbound), n_in = direction_count(&r->inbound);

    return e->details != NULL && e->outbound == n_out && e->inbound == n_in &&
           sas_same(e->sas, r->outbound.sas, n_out) && sas_same(e->sas + n_out, r->inbound.sas, n_in);
}

/* Makes the entry hold details for r's SAs; keeps the old one when the key's memory cannot be had. */
static void entry_store(details_entry *e, const secsock_result *r, PyObject *details)
{
    size_t n_out = direction_count(&r->outbound), n_in = direction_count(&r->inbound);
    secsock_sa *sas = PyMem_Malloc((n_out + n_in) * sizeof(*sas));
    secsock_sa *old_sas;
    PyObject *old;

    if (sas == NULL) {
        return; /* uncached: the answer stands */
    }
    memcpy(sas, r->outbound.sas, n_out * sizeof(*sas));
    memcpy(sas + n_out, r->inbound.sas, n_in * sizeof(*sas));
    old_sas = e->sas;
    old = e->details;
    e->sas = sas;
    e->outbound = (unsigned char)n_out;
    e->inbound = (unsigned char)n_in;
    Py_INCREF(details);
    e->details = details;
    PyMem_Free(old_sas);
    Py_XDECREF(old); /* last: a finalizer it runs sees a whole entry */
}

/* IpsecDetails(outbound, inbound); the shared "in the clear" one when neither direction has an SA. */
static PyObject *details_object(module_state *st, const secsock_result *r)
{
    PyObject *outbound, *inbound, *details;
    details_entry *e;
    unsigned long generation = st->details_generation;

    if (r->outbound.count == 0 && r->inbound.count == 0) {
        Py_INCREF(st->info_in_the_clear);
        return st->info_in_the_clear;
    }
    e = &st->details_cache[details_hash(r) & (DETAILS_CACHE - 1)];
    if (entry_matches(e, r)) {
        Py_INCREF(e->details);
        return e->details;
    }
    outbound = direction_tuple(st, &r->outbound, sa_object);
    inbound = outbound != NULL ? direction_tuple(st, &r->inbound, sa_object) : NULL;
    if (inbound == NULL) {
        Py_XDECREF(outbound);
        return NULL;
    }
    details = named_tuple(st, (PyObject *)Py_TYPE(st->info_in_the_clear), Py_BuildValue("(NN)", outbound, inbound));
    if (details != NULL && st->details_generation == generation) {
        entry_store(e, r, details);
    }
    return details;
}

/*
 * The bound SecurityInfo, built here for the answers the tables cover (the per-connection case: no tokens,
 * no IPsec2 fields); the facade's decoder for the rest. Consumes r's tokens.
 */
static PyObject *info_from_result(module_state *st, secsock_result *r)
{
    InfoObject *info;
    PyObject *raw, *decoded;
    int plain = r->peer_application_token == 0 && r->peer_machine_token == 0 && !r->has_ipsec2 &&
                r->protocol < INFO_PROTOCOLS && r->flags < INFO_FLAGS;

    if (!plain) {
        raw = result_to_tuple(st, r); /* closes the tokens if it fails; the decoder owns them once it runs */
        if (raw == NULL) {
            return NULL;
        }
        decoded = PyObject_CallFunctionObjArgs(st->info_decode, raw, NULL);
        Py_DECREF(raw);
        return decoded;
    }
    info = (InfoObject *)PyType_GenericAlloc((PyTypeObject *)st->info_class, 0);
    if (info == NULL) {
        return NULL;
    }
    info->protocol = st->info_protocols[r->protocol];
    Py_INCREF(info->protocol);
    info->flags = st->info_flags[r->flags];
    Py_INCREF(info->flags);
    if (r->has_ipsec_detail) {
        info->ipsec = details_object(st, r);
        if (info->ipsec == NULL) {
            Py_DECREF(info);
            return NULL;
        }
    }
    if (r->reason_out != SECSOCK_REASON_NONE) {
        info->reason = reason_object(st, r);
        if (info->reason == NULL) {
            Py_DECREF(info);
            return NULL;
        }
    }
    return (PyObject *)info;
}

/*
 * The answer for sock alone, the case a server meets on every accepted connection: the finished SecurityInfo,
 * or None, without any system call, when sock is not plainly a socket handle (the facade's general path then
 * names what is wrong). The tables must be bound.
 */
PyObject *query_plain(module_state *st, PyObject *sock)
{
    secsock_query_request req;
    secsock_result result;
    secsock_error err;
    int rc;

    memset(&req, 0, sizeof(req));
    rc = plain_socket_handle(st, sock, &req.sock);
    if (rc <= 0) {
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    /* sock.fileno() may have run Python code that cleared the module (m_clear) or unbound its tables. */
    if (st->info_base_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, MODULE_NOT_READY);
        return NULL;
    }
    if (st->info_class == NULL) {
        Py_RETURN_NONE; /* the facade's general path answers */
    }
    /* The GIL is released only when the answer may wait: a steady Linux query reads its snapshot (issue 14,
     * speed: under the VM's emulation the release and re-acquisition cost ~0.15x getpeername). */
    if (secsock_query_at_once(&req, &result) == 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = secsock_query(&req, &result, &err); /* clears err first; result is whole on success */
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            return raise_backend_error(&err);
        }
        if (st->info_base_type == NULL || st->info_class == NULL) { /* another thread cleared the module */
            PyErr_SetString(PyExc_RuntimeError, MODULE_NOT_READY);
            return NULL;
        }
    }
    return info_from_result(st, &result);
}

/*
 * query_info(sock, peer, token_access, ipsec2): the facade's query() in one call when sock alone was given
 * (peer None, token_access 0, ipsec2 False); None, without any system call, for every other argument: the
 * facade's general path then checks them and names what is wrong.
 */
PyObject *mod_query_info(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module); /* the calling interpreter's own tables: a pointer read, no lookup */
    PyObject *sock, *peer, *access_obj, *ipsec2;
    long long access;

    if (st == NULL) {
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "query_info", 4, 4, &sock, &peer, &access_obj, &ipsec2)) {
        return NULL;
    }
    if (st->info_class == NULL || peer != Py_None || ipsec2 != Py_False || !exact_int(access_obj, &access) ||
        access != 0) {
        Py_RETURN_NONE;
    }
    return query_plain(st, sock);
}

/*
 * query_sock(sock): query_info(sock, None, 0, False) as one argument (METH_O): the facade's query() has
 * checked the others, and passing one object skips the argument tuple and its unpacking on every accepted
 * connection (METH_FASTCALL is not in the 3.9 stable ABI).
 */
PyObject *mod_query_sock(PyObject *module, PyObject *sock)
{
    module_state *st = get_state(module);

    if (st == NULL) {
        return NULL;
    }
    if (st->info_class == NULL) {
        Py_RETURN_NONE;
    }
    return query_plain(st, sock);
}

PyObject *mod_query(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module);
    secsock_query_request req;
    secsock_result result;
    secsock_error err;
    int rc;

    if (st == NULL || parse_request(args, &req) < 0) {
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
    return result_to_tuple(st, &result);
}

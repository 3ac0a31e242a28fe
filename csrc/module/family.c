/* The rest of the family: set_security, the peer target name calls, impersonation, and the token calls. */
#include "module.h"

/* ---- the rest of the family --------------------------------------------------------------------------- */

/* Zero n bytes in a way the compiler may not drop as a dead store. */
static void wipe_bytes(char *bytes, Py_ssize_t n)
{
    volatile char *p = bytes;
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        p[i] = 0;
    }
}

/*
 * UTF-8 of a str (NULL for None) copied into memory this module owns (*owned, PyMem; release it with
 * wipe_and_release); a NUL inside is refused, naming the argument. Never the bytes object CPython made: for
 * "" and one-character ASCII strings that is a shared, process-wide object (issue 11, defect 1), which must
 * not be wiped. The temporary object is wiped only when this function holds its only reference.
 */
static int utf8_arg(PyObject *obj, const char *name, char **owned, const char **out)
{
    PyObject *bytes;
    char *text;
    Py_ssize_t n;

    *owned = NULL;
    *out = NULL;
    if (obj == Py_None) {
        return 0;
    }
    bytes = PyUnicode_AsUTF8String(obj);
    if (bytes == NULL) {
        return -1;
    }
    text = PyBytes_AsString(bytes);
    n = PyBytes_Size(bytes);
    if (text == NULL || n < 0 || (Py_ssize_t)strlen(text) != n) {
        Py_DECREF(bytes);
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "%s: must not contain a NUL character", name);
        }
        return -1;
    }
    *owned = (char *)PyMem_Malloc((size_t)n + 1);
    if (*owned == NULL) {
        Py_DECREF(bytes);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*owned, text, (size_t)n + 1);
    if (Py_REFCNT(bytes) == 1) {
        wipe_bytes(text, n); /* ours alone: no copy of the text outlives this call in it */
    }
    Py_DECREF(bytes);
    *out = *owned;
    return 0;
}

/* Overwrite a text copied by utf8_arg (it may be a secret), then free it. NULL is allowed. */
static void wipe_and_release(char **owned)
{
    if (*owned != NULL) {
        wipe_bytes(*owned, (Py_ssize_t)strlen(*owned));
        PyMem_Free(*owned);
        *owned = NULL;
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
PyObject *mod_set_security_begin(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module);
    PyObject *fd_obj, *settings_obj, *mm, *qm, *user_obj, *domain_obj, *password_obj;
    PyObject *protocol_obj, *security_flags_obj, *ipsec_flags_obj;
    char *user = NULL, *domain = NULL, *password = NULL;
    secsock_settings settings;
    secsock_fd fd;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;
    int is_ipsec;

    if (st == NULL) {
        return NULL;
    }
    memset(&settings, 0, sizeof(settings));
    if (!PyArg_ParseTuple(args, "OO", &fd_obj, &settings_obj) || parse_fd(fd_obj, &fd) < 0) {
        return NULL;
    }
    if (settings_obj != Py_None) {
        if (!PyArg_ParseTuple(settings_obj, "pOOOOOOOO", &is_ipsec, &protocol_obj, &security_flags_obj,
                              &ipsec_flags_obj, &mm, &qm, &user_obj, &domain_obj, &password_obj) ||
            u32_arg(protocol_obj, "protocol", &settings.protocol) < 0 ||
            u32_arg(security_flags_obj, "security_flags", &settings.security_flags) < 0 ||
            u32_arg(ipsec_flags_obj, "ipsec_flags", &settings.ipsec_flags) < 0 ||
            guid_arg(mm, settings.mm_policy_key) < 0 || guid_arg(qm, settings.qm_policy_key) < 0 ||
            utf8_arg(user_obj, "user", &user, &settings.user) < 0 ||
            utf8_arg(domain_obj, "domain", &domain, &settings.domain) < 0 ||
            utf8_arg(password_obj, "password", &password, &settings.password) < 0) {
            goto fail;
        }
        settings.is_ipsec = is_ipsec;
    }
    if ((obj = pending_alloc(st, 0)) == NULL) {
        goto fail;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_set_security_begin(fd, settings_obj != Py_None ? &settings : NULL, &err);
    Py_END_ALLOW_THREADS
    /* The backend packed its own copy: ours is no longer needed by anyone. */
    wipe_and_release(&password);
    wipe_and_release(&user);
    wipe_and_release(&domain);
    return pending_attach(obj, pending, &err);

fail:
    wipe_and_release(&password);
    wipe_and_release(&user);
    wipe_and_release(&domain);
    return NULL;
}

/* set_peer_target_name_begin(fd, protocol, peer | None, name) -> Pending */
PyObject *mod_set_peer_target_name_begin(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module);
    PyObject *fd_obj, *peer_obj, *name_obj, *protocol_obj;
    char *name_holder = NULL;
    uint32_t protocol;
    const char *name;
    secsock_fd fd;
    secsock_peer peer;
    int has_peer;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;

    if (st == NULL) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOU", &fd_obj, &protocol_obj, &peer_obj, &name_obj) || parse_fd(fd_obj, &fd) < 0 ||
        u32_arg(protocol_obj, "protocol", &protocol) < 0 ||
        parse_peer(peer_obj, &peer, &has_peer) < 0 || utf8_arg(name_obj, "name", &name_holder, &name) < 0) {
        return NULL;
    }
    if ((obj = pending_alloc(st, 0)) == NULL) {
        wipe_and_release(&name_holder);
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_set_peer_target_name_begin(fd, protocol, has_peer ? &peer : NULL, name, &err);
    Py_END_ALLOW_THREADS
    wipe_and_release(&name_holder);
    return pending_attach(obj, pending, &err);
}

/* delete_peer_target_name_begin(fd, peer) -> Pending */
PyObject *mod_delete_peer_target_name_begin(PyObject *module, PyObject *args)
{
    module_state *st = get_state(module);
    PyObject *fd_obj, *peer_obj;
    secsock_fd fd;
    secsock_peer peer;
    int has_peer;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;

    if (st == NULL) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO", &fd_obj, &peer_obj) || parse_fd(fd_obj, &fd) < 0 ||
        parse_peer(peer_obj, &peer, &has_peer) < 0) {
        return NULL;
    }
    if (!has_peer) {
        PyErr_SetString(PyExc_ValueError, "peer: required, the address whose target name is deleted");
        return NULL;
    }
    if ((obj = pending_alloc(st, 0)) == NULL) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_delete_peer_target_name_begin(fd, &peer, &err);
    Py_END_ALLOW_THREADS
    return pending_attach(obj, pending, &err);
}

/* impersonate_peer(fd, peer | None): the calling OS thread impersonates the peer until revert. */
PyObject *mod_impersonate_peer(PyObject *module, PyObject *args)
{
    PyObject *fd_obj, *peer_obj;
    secsock_fd fd;
    secsock_peer peer;
    int has_peer, rc;
    secsock_error err;

    if (get_state(module) == NULL) {
        return NULL;
    }
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

PyObject *mod_revert_impersonation(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    secsock_error err;

    if (get_state(module) == NULL) {
        return NULL;
    }
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

PyObject *mod_token_user(PyObject *module, PyObject *arg)
{
    uint64_t token;
    secsock_account user;
    secsock_error err;
    int rc;

    if (get_state(module) == NULL) {
        return NULL;
    }
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

PyObject *mod_token_groups(PyObject *module, PyObject *arg)
{
    uint64_t token;
    secsock_account *groups = NULL;
    size_t count = 0, i;
    secsock_error err;
    PyObject *tuple;
    int rc;

    if (get_state(module) == NULL) {
        return NULL;
    }
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

PyObject *mod_token_is_member(PyObject *module, PyObject *args)
{
    PyObject *token_obj, *name_obj;
    char *holder = NULL;
    const char *name;
    uint64_t token;
    int member = 0, rc;
    secsock_error err;

    if (get_state(module) == NULL) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OU", &token_obj, &name_obj) || token_arg(token_obj, &token) < 0 ||
        utf8_arg(name_obj, "sid_or_account", &holder, &name) < 0) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_token_is_member(token, name, &member, &err);
    Py_END_ALLOW_THREADS
    wipe_and_release(&holder);
    if (rc < 0) {
        return raise_backend_error(&err);
    }
    return PyBool_FromLong(member);
}

/* The one function that works on a module get_state() refuses: releasing a handle (a finalizer at shutdown)
   needs no state and is never refused. */
PyObject *mod_close_token(PyObject *Py_UNUSED(module), PyObject *arg)
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

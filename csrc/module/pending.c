/* The PendingQuery type (secsock._secsock.Pending): one backend pending call owned by one object; begin_query. */
#include "module.h"

/* ---- PendingQuery -------------------------------------------------------------------------------------- */

/* The type is a heap type per module object (module_state.pending_type); each instance holds a reference to it
   (taken by PyType_GenericAlloc, released by Pending_dealloc) and to nothing else, so it needs no GC. */

static PendingObject *pending_checked(PyObject *self)
{
    PendingObject *p = (PendingObject *)self;
    if (p->pending == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed pending query");
        return NULL;
    }
    return p;
}

/*
 * Free the backend's pending: 0, or -1 with a RuntimeWarning raised (by the warnings filter) when the
 * backend had to leak it because the system could not cancel it (issue 11, defect 8; CPython's _overlapped
 * warns the same way instead of hanging).
 */
static int pending_release(PendingObject *p)
{
    secsock_pending *pending = p->pending;
    secsock_error err;
    int rc = 0;

    p->pending = NULL;
    if (pending != NULL) {
        /* May cancel and wait until the system is done with the OVERLAPPED and buffers: never with the GIL. */
        Py_BEGIN_ALLOW_THREADS
        rc = secsock_pending_free_or_leak(pending, &err);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            return PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "secsock: %s: %s", err.call, err.message);
        }
    }
    return 0;
}

static void Pending_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    PyObject *type_err, *value, *tb;

    PyErr_Fetch(&type_err, &value, &tb);
    if (pending_release((PendingObject *)self) < 0) {
        PyErr_WriteUnraisable(NULL);
    }
    PyErr_Restore(type_err, value, tb);
    tp_free(self);
    Py_DECREF(type);
}

static PyObject *Pending_done(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PendingObject *p = pending_checked(self);
    int done;

    if (p == NULL) {
        return NULL;
    }
    /* Settling a completion may re-issue the call (a size query, then the call again): not under the GIL,
       and counted as a waiter so that close() from another thread meanwhile is refused. */
    p->waiters++;
    Py_BEGIN_ALLOW_THREADS
    done = secsock_pending_done(p->pending);
    Py_END_ALLOW_THREADS
    p->waiters--;
    return PyBool_FromLong(done);
}

/* 0 in flight, 1 done, 2 a WSAEMSGSIZE completed and wait() must re-issue the call: never blocks, for event
   loops (review of issue 11, finding 1) and __repr__ (finding 14). */
static PyObject *Pending_poll(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PendingObject *p = pending_checked(self);

    if (p == NULL) {
        return NULL;
    }
    return PyLong_FromLong(secsock_pending_poll(p->pending));
}

/* A long wait is cut into slices of this many ms, with the GIL taken back between them to run signal handlers. */
#define WAIT_SLICE_MS 50

/*
 * Wait up to timeout_ms (negative: forever) without the GIL, in slices, letting signals through between them
 * as time.sleep does, so Ctrl+C interrupts a wait for a query that never completes (issue 11, defect 8).
 * 1 when done, 0 on time-out, -1 with an exception set (the backend's error or KeyboardInterrupt). The query
 * stays in flight after an interruption; close() (or leaving the with block) cancels it.
 */
static int wait_interruptibly(PendingObject *p, long long timeout_ms)
{
    secsock_error err;
    long long left = timeout_ms, slice;
    int rc;

    for (;;) {
        slice = left < 0 || left > WAIT_SLICE_MS ? WAIT_SLICE_MS : left;
        secsock_error_clear(&err);
        Py_BEGIN_ALLOW_THREADS
        rc = secsock_pending_wait(p->pending, (int64_t)slice, &err);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            if (rc < 0) {
                raise_backend_error(&err);
            }
            return rc;
        }
        if (left >= 0) {
            left -= slice;
            if (left <= 0) {
                return 0;
            }
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

static PyObject *Pending_wait(PyObject *self, PyObject *args)
{
    long long timeout_ms;
    int rc;
    PendingObject *p = pending_checked(self);

    if (p == NULL || !PyArg_ParseTuple(args, "L", &timeout_ms)) {
        return NULL;
    }
    /* Several threads may wait at once; close() is refused meanwhile, so the pending outlives every waiter. */
    p->waiters++;
    rc = wait_interruptibly(p, timeout_ms);
    p->waiters--;
    if (rc < 0) {
        return NULL;
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
    /* Done (re-issues included) before the result is taken, so that the taking does not block. */
    if (wait_interruptibly(p, -1) < 0) {
        p->in_result = 0;
        return NULL;
    }
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
    return result_to_tuple(NULL, &result); /* no state here: the reason text is made anew */
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
    p->waiters++; /* CancelIoEx (it never re-issues): without the GIL, close() refused meanwhile */
    Py_BEGIN_ALLOW_THREADS
    rc = secsock_pending_cancel(p->pending, &err);
    Py_END_ALLOW_THREADS
    p->waiters--;
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
    if (pending_release(p) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Pending_closed(PyObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((PendingObject *)self)->pending == NULL);
}

static PyMethodDef Pending_methods[] = {
    {"done", Pending_done, METH_NOARGS, "True once the system is done with the query."},
    {"poll", Pending_poll, METH_NOARGS, "0 in flight, 1 done, 2 wait() must re-issue the call; never blocks."},
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

PyType_Spec Pending_spec = {
    "secsock._secsock.Pending",
    sizeof(PendingObject),
    0,
    Py_TPFLAGS_DEFAULT,
    Pending_slots,
};


/*
 * A Pending object for a call the backend is about to issue. It is allocated before the call, so nothing can
 * fail once the system owns the OVERLAPPED; pending_attach() then hands it the backend's pending or, if the
 * call could not be issued, frees it and raises.
 */
PendingObject *pending_alloc(module_state *st, int has_result)
{
    PendingObject *obj;

    obj = (PendingObject *)PyType_GenericAlloc((PyTypeObject *)st->pending_type, 0);
    if (obj != NULL) {
        obj->pending = NULL;
        obj->has_result = has_result;
        obj->waiters = 0;
        obj->in_result = 0;
    }
    return obj;
}

PyObject *pending_attach(PendingObject *obj, secsock_pending *pending, const secsock_error *err)
{
    if (pending == NULL) {
        Py_DECREF(obj);
        return raise_backend_error(err);
    }
    obj->pending = pending;
    return (PyObject *)obj;
}

PyObject *mod_begin_query(PyObject *module, PyObject *args)
{
    secsock_query_request req;
    secsock_error err;
    secsock_pending *pending;
    PendingObject *obj;
    module_state *st = get_state(module);

    if (st == NULL || parse_request(args, &req) < 0 || (obj = pending_alloc(st, 1)) == NULL) {
        return NULL;
    }
    secsock_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    pending = secsock_query_begin(&req, &err);
    Py_END_ALLOW_THREADS
    return pending_attach(obj, pending, &err);
}

/* The framer's inner loop, compiled: skip whole messages nobody keeps.
 *
 * scan(data, pos, keep, max_length) -> int
 *
 * Walks the typed messages of `data` (any buffer) from `pos` and returns the position of the first
 * one Python must look at: a kept type (keep[type] != 0), a header cut off by the end of the
 * chunk, a message that runs past the end, or a length outside 4..max_length (Python raises the
 * error). It returns len(data) when every message up to the end was whole and not kept.
 *
 * Everything else (held bytes, startup packets, peeks, frames, errors) stays in framer.py, so this
 * file holds no state and the pure-Python framer is the reference for its results.
 * SOURCE_SHA256 is this file's hash at build time (setup.py); framer.py compares it with the
 * file beside it and falls back to pure Python when they differ (a stale editable build).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

static PyObject *
scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, keep;
    Py_ssize_t pos, max_length;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 4 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    max_length = PyLong_AsSsize_t(args[3]);
    if (max_length == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &keep, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (keep.len < 256 || pos < 0) {
        PyBuffer_Release(&keep);
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "scan() needs a 256-byte keep table and pos >= 0");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)data.buf;
    const unsigned char *kept = (const unsigned char *)keep.buf;
    Py_ssize_t end = data.len;
    while (end - pos >= 5) {
        const unsigned char *h = p + pos;
        if (kept[h[0]])
            break;
        /* The length word is unsigned big-endian; compare in 64 bits so 2**31 and up never wrap. */
        unsigned long long length = ((unsigned long long)h[1] << 24) | ((unsigned long long)h[2] << 16) |
                                    ((unsigned long long)h[3] << 8) | (unsigned long long)h[4];
        if (length < 4 || length > (unsigned long long)max_length)
            break;
        if ((unsigned long long)(end - pos) < length + 1)
            break;
        pos += (Py_ssize_t)length + 1;
    }
    PyBuffer_Release(&keep);
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(pos);
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, pos, keep, max_length) -> position of the first message Python must look at"},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    return PyModule_AddStringConstant(module, "SOURCE_SHA256", SOURCE_SHA256);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_scan", "The framer's compiled scanning loop; see framer.py.", 0, methods, slots,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModuleDef_Init(&moduledef);
}

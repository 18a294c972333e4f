/* The client's worker, its per-record loop in C: ``group_records``, the same contract as
 * ``telemetry_shunt.client._aggregate._group_records_py`` (the pure-Python fallback, and the reference the
 * tests hold it to). Built by hatch_build.py when a C compiler is there; the client works without it.
 *
 * Records are the callers' kwargs dicts with their value already taken out (see _records.py). Each one's
 * group key is ``(*record, *record.values())``; a record whose group exists has its value appended to it.
 * The loop stops at the first record whose group does not exist (the caller decides whether it may open
 * one: the cardinality guard, attribute orders) or whose key cannot be hashed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
stopped_at(Py_ssize_t index, PyObject *key)  /* steals key (may be Py_None, borrowed then) */
{
    if (key == Py_None)
        Py_INCREF(key);
    return Py_BuildValue("(nN)", index, key);
}

PyDoc_STRVAR(group_records_doc,
"group_records(items, values, groups, start) -> (stop, key)\n\n"
"From items[start] on, append values[i] to groups[(*items[i], *items[i].values())] while that group\n"
"exists. Returns (len(items), None) when every record joined its group; otherwise the index of the first\n"
"that did not and its key, or None for its key if that cannot be hashed. Every record must be a dict.");

static PyObject *
group_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "group_records() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *items = args[0], *values = args[1], *groups = args[2];
    if (!PyList_CheckExact(items) || !PyList_CheckExact(values) || !PyDict_CheckExact(groups)) {
        PyErr_SetString(PyExc_TypeError, "group_records(): items and values must be lists, groups a dict");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[3]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "group_records(): start must be >= 0");
        return NULL;
    }
    /* The sizes are read again on every record: a key's __hash__ or __eq__ (an attribute value's) runs
     * Python code, and nothing here may trust what it read before. */
    for (; i < PyList_GET_SIZE(items); i++) {
        if (i >= PyList_GET_SIZE(values)) {
            PyErr_SetString(PyExc_ValueError, "group_records(): fewer values than items");
            return NULL;
        }
        PyObject *record = PyList_GET_ITEM(items, i);
        if (!PyDict_CheckExact(record)) {
            PyErr_Format(PyExc_TypeError, "group_records(): a record must be a dict, not %.100s",
                         Py_TYPE(record)->tp_name);
            return NULL;
        }
        Py_ssize_t size = PyDict_GET_SIZE(record), position = 0, j = 0;
        PyObject *key = PyTuple_New(2 * size), *name, *value;
        if (key == NULL)
            return NULL;
        /* Nothing between PyTuple_New and the end of this loop runs Python code. */
        while (j < size && PyDict_Next(record, &position, &name, &value)) {
            Py_INCREF(name);
            PyTuple_SET_ITEM(key, j, name);
            Py_INCREF(value);
            PyTuple_SET_ITEM(key, size + j, value);
            j++;
        }
        if (j != size) {  /* cannot happen for an exact dict; never hand out a half-filled tuple */
            Py_DECREF(key);
            PyErr_SetString(PyExc_RuntimeError, "group_records(): a record changed size while read");
            return NULL;
        }
        PyObject *group = PyDict_GetItemWithError(groups, key);  /* borrowed */
        if (group == NULL) {
            if (!PyErr_Occurred())
                return stopped_at(i, key);
            Py_DECREF(key);
            if (!PyErr_ExceptionMatches(PyExc_TypeError))
                return NULL;
            PyErr_Clear();  /* an unhashable attribute value: the caller keys it by its text */
            return stopped_at(i, Py_None);
        }
        Py_DECREF(key);
        if (!PyList_CheckExact(group)) {
            PyErr_SetString(PyExc_TypeError, "group_records(): a group must be a list");
            return NULL;
        }
        if (i >= PyList_GET_SIZE(values)) {
            PyErr_SetString(PyExc_ValueError, "group_records(): fewer values than items");
            return NULL;
        }
        if (PyList_Append(group, PyList_GET_ITEM(values, i)) < 0)
            return NULL;
    }
    return stopped_at(PyList_GET_SIZE(items), Py_None);  /* (start may be past the end: nothing to do) */
}

static PyMethodDef methods[] = {
    {"group_records", (PyCFunction)(void (*)(void))group_records, METH_FASTCALL, group_records_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "telemetry_shunt.client._speedups",
    .m_doc = "The client worker's per-record loop in C (optional: _aggregate.py falls back to Python).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}

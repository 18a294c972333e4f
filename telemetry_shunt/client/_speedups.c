/* The client's worker, its per-record loop in C: ``group_records``, the same contract as
 * ``telemetry_shunt.client._aggregate._group_records_py`` (the pure-Python fallback, and the reference the
 * tests hold it to); and ``bucket_counts``, ``ExpHistogram._bucket_all``'s bulk path in C. Built by
 * hatch_build.py when a C compiler is there; the client works without it.
 *
 * Records are the callers' kwargs dicts, their value under ``value_key`` (see _records.py). Each one's group
 * key is ``(*names, *values)`` of its other entries, in the caller's order; a record whose group exists has its
 * value appended to it and is freed at once (its slot in ``items`` set to None), while it is still in the
 * cache: one pass over each record, which the worker reads long after a caller on another core wrote it. The
 * loop stops at the first record whose group does not exist (the caller decides whether it may open one: the
 * cardinality guard, attribute orders) or whose key cannot be hashed. A record made of the same objects as
 * one already looked up finds its group in a small identity cache (see identity_cache).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)0)
#endif
/* How far ahead to ask for the next records' memory: the dict itself, then (once that has arrived) the
 * table of its entries. */
#define AHEAD_DICT 8
#define AHEAD_TABLE 4

/* 1 when ``function`` got ``expected`` arguments; else 0, with a TypeError that names it. */
static int
takes(const char *function, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs == expected)
        return 1;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", function, expected, nargs);
    return 0;
}

static PyObject *
stopped_at(Py_ssize_t index, PyObject *key, PyObject *value)  /* steals key (unless None or False) */
{
    if (key == Py_None || key == Py_False)
        Py_INCREF(key);
    return Py_BuildValue("(nNO)", index, key, value);
}

/* Where CPython 3.11's dict internals are read (its layout and version tag: the value prefetch and the
 * identity cache below); on other versions the loop goes without both. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define CPYTHON_311 1
#else
#define CPYTHON_311 0
#endif

#if CPYTHON_311
/* CPython 3.11's PyDictKeysObject header (Include/internal/pycore_dict.h), read only to find where a record's
 * value object is, two records ahead, for a prefetch. */
typedef struct {
    Py_ssize_t dk_refcnt;
    uint8_t dk_log2_size;
    uint8_t dk_log2_index_bytes;
    uint8_t dk_kind;
    uint32_t dk_version;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} keys_header_311;
#define DICT_KEYS_UNICODE_311 1
#define AHEAD_VALUE 2
#endif

static void
prefetch_ahead(PyObject *items, Py_ssize_t i)
{
    Py_ssize_t size = PyList_GET_SIZE(items);
    if (i + AHEAD_DICT < size)
        PREFETCH(PyList_GET_ITEM(items, i + AHEAD_DICT));
    if (i + AHEAD_TABLE < size) {
        PyObject *ahead = PyList_GET_ITEM(items, i + AHEAD_TABLE);
        if (PyDict_CheckExact(ahead)) {  /* (a hint only: a prefetch never faults) */
            const char *table = (const char *)((PyDictObject *)ahead)->ma_keys;
            PREFETCH(table);
            PREFETCH(table + 64);
            PREFETCH(table + 128);
            PREFETCH(table + 192);
        }
    }
#ifdef AHEAD_VALUE
    /* The value object (the caller's float, on no line of the record's own) of the record two ahead, whose
     * table has arrived by now: a combined string-keyed table (a kwargs dict), its value stored second to
     * last (count/gauge/distribution store the value, then the name). */
    if (i + AHEAD_VALUE < size) {
        PyObject *ahead = PyList_GET_ITEM(items, i + AHEAD_VALUE);
        if (PyDict_CheckExact(ahead) && ((PyDictObject *)ahead)->ma_values == NULL) {
            const keys_header_311 *keys = (const keys_header_311 *)((PyDictObject *)ahead)->ma_keys;
            Py_ssize_t n = keys->dk_nentries;
            if (keys->dk_kind == DICT_KEYS_UNICODE_311 && n >= 2 && n <= ((Py_ssize_t)1 << keys->dk_log2_size)) {
                PyObject *const *entries = (PyObject *const *)(keys->dk_indices + ((size_t)1 << keys->dk_log2_index_bytes));
                PREFETCH(entries[2 * (n - 2) + 1]);  /* (key, value) pairs */
            }
        }
    }
#endif
}

PyDoc_STRVAR(group_records_doc,
"group_records(items, groups, start, value_key, name_keys) -> (stop, key, value)\n\n"
"From items[start] on, append each record's value (record[value_key]) to groups[key], key being the\n"
"record's other names then their values, and set items[i] to None, while that group exists. Returns\n"
"(len(items), None, None) when every record joined its group; otherwise the index of the first that did\n"
"not, its key (None if that cannot be hashed) and its value; or False and None for a record in which the\n"
"value_key object itself (by identity) is not found, or whose last other entry's key is not one of the\n"
"name_keys objects. Every record must be a dict.");

/* A record's names and values in the caller's order (borrowed from the record), when it has at most
 * MAX_FIELDS entries besides its value; a bigger record builds its key tuple straight from the dict. */
#define MAX_FIELDS 16

/* The identity cache: within one call, a record whose names and values are the *same objects* as those of a
 * key already looked up (the common case: the caller's interned keyword names, and attribute values it keeps
 * in constants or reuses) finds that key's group without building a tuple, hashing it and comparing it
 * (about half of the loop's instructions). Only keys of plain values are cached (see all_plain). An entry
 * holds its key tuple, so none of those objects can be freed and its address reused while the entry lives;
 * and it is trusted only while ``groups`` is unchanged (its version tag, CPython 3.11's; on other versions
 * there is no cache). A record that misses takes the dict lookup, which alone decides equality (equal but
 * distinct objects, a __eq__, a hash that fails); identical objects are equal there too (a dict compares by
 * identity first, and so does a tuple, item by item). */
#define IDENTITY_CACHE CPYTHON_311
/* The cache is set up once a call has grouped this many records (a short call never pays for it), with
 * twice as many slots as groups (a power of two, at most MAX_SLOTS) and filled to half of them at most. */
#define CACHE_AFTER 16
#define MIN_SLOTS 64
#define MAX_SLOTS 16384

typedef struct {
    Py_uhash_t hash;
    PyObject *key;    /* the key tuple (a strong reference), NULL for an empty slot */
    PyObject *group;  /* its group (a strong reference) */
} cached_group;

typedef struct {
    cached_group *slots;  /* NULL: no cache (yet) */
    size_t mask;
    Py_ssize_t used, limit;
    uint64_t version;     /* groups' version tag when the entries were found */
    Py_ssize_t hits, misses, groups;  /* (groups: how many there were when the cache was set up) */
    int off;              /* given up for this call: records of new objects every time (see GIVE_UP_AFTER) */
} identity_cache;

/* Each group's key misses once (then it is cached); records whose attribute values are new objects on every
 * call (an f-string) miss every time. Past GIVE_UP_AFTER misses more than there are groups, and more misses
 * than hits, the call stops hashing and probing for nothing. */
#define GIVE_UP_AFTER 64

static void
cache_clear(identity_cache *cache)
{
    if (cache->slots == NULL)
        return;
    for (size_t s = 0; s <= cache->mask && cache->used > 0; s++) {
        if (cache->slots[s].key != NULL) {
            Py_CLEAR(cache->slots[s].key);
            Py_CLEAR(cache->slots[s].group);
            cache->used--;
        }
    }
}

static void
cache_free(identity_cache *cache)
{
    cache_clear(cache);
    PyMem_Free(cache->slots);
    cache->slots = NULL;
}

#if IDENTITY_CACHE
static Py_uhash_t
identity_hash(PyObject *const *objects, Py_ssize_t n)
{
    Py_uhash_t h = (Py_uhash_t)n;
    for (Py_ssize_t e = 0; e < n; e++) {
        h = (h ^ ((Py_uhash_t)(uintptr_t)objects[e] >> 4)) * (Py_uhash_t)0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    return h;
}

static uint64_t
groups_version(PyObject *groups)
{
    return ((PyDictObject *)groups)->ma_version_tag;
}

/* The cache set up for ``groups`` (sized by its length); 0, or -1 with MemoryError. */
static int
cache_start(identity_cache *cache, PyObject *groups)
{
    size_t slots = MIN_SLOTS;
    while (slots < MAX_SLOTS && slots < 2 * (size_t)PyDict_GET_SIZE(groups))
        slots <<= 1;
    cache->slots = PyMem_Calloc(slots, sizeof(cached_group));
    if (cache->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    cache->mask = slots - 1;
    cache->used = 0;
    cache->limit = (Py_ssize_t)(slots / 2);
    cache->version = groups_version(groups);
    cache->groups = PyDict_GET_SIZE(groups);
    return 0;
}

/* The cached group (borrowed) of a record whose key would be ``objects`` (names then values), or NULL. */
static PyObject *
cache_find(identity_cache *cache, PyObject *const *objects, Py_ssize_t n, Py_uhash_t hash)
{
    for (size_t s = hash & cache->mask;; s = (s + 1) & cache->mask) {
        cached_group *slot = &cache->slots[s];
        if (slot->key == NULL)
            return NULL;
        if (slot->hash != hash || PyTuple_GET_SIZE(slot->key) != n)
            continue;
        PyObject *const *cached = ((PyTupleObject *)slot->key)->ob_item;
        Py_ssize_t e = 0;
        while (e < n && cached[e] == objects[e])
            e++;
        if (e == n)
            return slot->group;
    }
}
#endif

/* Remember ``key`` (whose items are ``objects``) -> ``group``, while there is room (takes new references). */
static void
cache_add(identity_cache *cache, Py_uhash_t hash, PyObject *key, PyObject *group)
{
    if (cache->used >= cache->limit)
        return;
    size_t s = hash & cache->mask;
    while (cache->slots[s].key != NULL)
        s = (s + 1) & cache->mask;
    cache->slots[s].hash = hash;
    Py_INCREF(key);
    cache->slots[s].key = key;
    Py_INCREF(group);
    cache->slots[s].group = group;
    cache->used++;
}

/* Whether every one of ``objects`` is a str, int, float, bool or None (their exact types): a key made of
 * these is cached, since freeing it (when the call ends) and comparing it run no Python code. */
static int
all_plain(PyObject *const *objects, Py_ssize_t n)
{
    for (Py_ssize_t e = 0; e < n; e++) {
        PyTypeObject *type = Py_TYPE(objects[e]);
        if (type != &PyUnicode_Type && type != &PyLong_Type && type != &PyFloat_Type && type != &PyBool_Type
                && objects[e] != Py_None)
            return 0;
    }
    return 1;
}

/* A new tuple of ``n`` borrowed objects. */
static PyObject *
tuple_of(PyObject *const *objects, Py_ssize_t n)
{
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t e = 0; e < n; e++) {
        Py_INCREF(objects[e]);
        PyTuple_SET_ITEM(tuple, e, objects[e]);
    }
    return tuple;
}

/* A record's key objects, ``(*names, *values)`` in ``objects`` (borrowed; at most 2 * MAX_FIELDS) or, for a
 * bigger record, as a new tuple in ``*tuple``; and its value (borrowed). 1 when the record is well formed
 * (value_key is there, by identity, and the last other entry's key is one of name_keys, by identity), 0
 * when not, -1 with an exception. Runs no Python code. */
static int
record_key(PyObject *record, PyObject *value_key, PyObject *name_keys, PyObject **objects, PyObject **tuple,
           PyObject **value)
{
    Py_ssize_t fields = PyDict_GET_SIZE(record) - 1, position = 0, j = 0;
    PyObject *name, *field;
    *tuple = NULL;
    *value = NULL;
    if (fields < 0)
        return 0;
    PyObject **names = objects, **values = objects + fields;
    if (fields > MAX_FIELDS) {
        *tuple = PyTuple_New(2 * fields);
        if (*tuple == NULL)
            return -1;
        names = values = ((PyTupleObject *)*tuple)->ob_item;  /* (filled below, with new references) */
        values += fields;
    }
    while (PyDict_Next(record, &position, &name, &field)) {
        if (name == value_key && *value == NULL) {
            *value = field;
            continue;
        }
        if (j == fields)  /* no value among the entries */
            break;
        if (*tuple != NULL) {
            Py_INCREF(name);
            Py_INCREF(field);
        }
        names[j] = name;
        values[j] = field;
        j++;
    }
    /* The last entry's key (the name, stored last) is one of the client's, by identity. */
    int own_name = 0;
    if (j == fields && fields > 0) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(name_keys) && !own_name; k++)
            own_name = names[fields - 1] == PyTuple_GET_ITEM(name_keys, k);
    }
    if (*value == NULL || j != fields || !own_name) {
        Py_CLEAR(*tuple);  /* (never hand out a half-filled tuple) */
        *value = NULL;
        return 0;
    }
    return 1;
}

static PyObject *
group_loop(PyObject *items, PyObject *groups, Py_ssize_t i, PyObject *value_key, PyObject *name_keys,
           identity_cache *cache)
{
    PyObject *objects[2 * MAX_FIELDS];
    Py_ssize_t grouped = 0;
    /* The list's size is read again on every record: a key's __hash__ or __eq__ (an attribute value's), or
     * a freed record's values, run Python code, and nothing here may trust what it read before. */
    for (; i < PyList_GET_SIZE(items); i++) {
        prefetch_ahead(items, i);
        PyObject *record = PyList_GET_ITEM(items, i);
        if (!PyDict_CheckExact(record)) {
            PyErr_Format(PyExc_TypeError, "group_records(): a record must be a dict, not %.100s",
                         Py_TYPE(record)->tp_name);
            return NULL;
        }
        PyObject *key, *value;
        int formed = record_key(record, value_key, name_keys, objects, &key, &value);
        if (formed < 0)
            return NULL;
        if (formed == 0) {
            /* The client's own value key is not there, or the last entry's key is not its name key (by
             * identity): a caller passed an attribute of that name with **, which kept its own key object
             * (an equal string, so its key would be equal to an honest record's). The caller drops the
             * record (key False). */
            return stopped_at(i, Py_False, Py_None);
        }
        Py_ssize_t n = 2 * (PyDict_GET_SIZE(record) - 1);
        PyObject *group = NULL;  /* borrowed (from groups, or from the cache) */
        Py_uhash_t hash = 0;
        int cacheable = IDENTITY_CACHE && key == NULL && !cache->off && all_plain(objects, n);
#if IDENTITY_CACHE
        if (cacheable && cache->slots == NULL && grouped >= CACHE_AFTER && cache_start(cache, groups) < 0)
            return NULL;
        if (cacheable && cache->slots != NULL) {
            uint64_t version = groups_version(groups);
            if (version != cache->version) {  /* groups changed: (Python code ran) what was found may be gone */
                cache_clear(cache);
                cache->version = version;
            }
            hash = identity_hash(objects, n);
            group = cache_find(cache, objects, n, hash);
            if (group != NULL) {
                cache->hits++;
            } else if (++cache->misses > cache->groups + GIVE_UP_AFTER && cache->misses > cache->hits) {
                cache->off = 1;
                cacheable = 0;
            }
        }
#endif
        Py_INCREF(value);  /* (the record may be freed below) */
        if (group == NULL) {
            if (key == NULL && (key = tuple_of(objects, n)) == NULL) {
                Py_DECREF(value);
                return NULL;
            }
            /* Nothing from the record's read to here ran Python code; the lookup may (a __hash__, a __eq__). */
            group = PyDict_GetItemWithError(groups, key);  /* borrowed */
            if (group == NULL) {
                PyObject *out;
                if (!PyErr_Occurred()) {
                    out = stopped_at(i, key, value);
                } else {
                    Py_DECREF(key);
                    if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
                        Py_DECREF(value);
                        return NULL;
                    }
                    PyErr_Clear();  /* an unhashable attribute value: the caller keys it by its text */
                    out = stopped_at(i, Py_None, value);
                }
                Py_DECREF(value);
                return out;
            }
            if (cacheable && cache->slots != NULL && PyList_CheckExact(group))
                cache_add(cache, hash, key, group);
            Py_DECREF(key);
        }
        if (!PyList_CheckExact(group)) {
            Py_DECREF(value);
            PyErr_SetString(PyExc_TypeError, "group_records(): a group must be a list");
            return NULL;
        }
        int appended = PyList_Append(group, value);
        Py_DECREF(value);
        if (appended < 0)
            return NULL;
        grouped++;
        /* Free the record now, while it is in the cache (the list's slot keeps it alive until here). */
        if (i < PyList_GET_SIZE(items)) {
            Py_INCREF(Py_None);
            PyList_SetItem(items, i, Py_None);
        }
    }
    return stopped_at(PyList_GET_SIZE(items), Py_None, Py_None);  /* (start may be past the end) */
}

static PyObject *
group_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes("group_records", nargs, 5))
        return NULL;
    PyObject *items = args[0], *groups = args[1], *value_key = args[3], *name_keys = args[4];
    if (!PyList_CheckExact(items) || !PyDict_CheckExact(groups) || !PyTuple_CheckExact(name_keys)) {
        PyErr_SetString(PyExc_TypeError, "group_records(): items must be a list, groups a dict, name_keys a tuple");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[2]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "group_records(): start must be >= 0");
        return NULL;
    }
    identity_cache cache = {NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    PyObject *result = group_loop(items, groups, i, value_key, name_keys, &cache);
    /* (Freeing the entries may run Python code, a key's last reference gone: keep any exception set.) */
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    cache_free(&cache);
    PyErr_Restore(type, exc, tb);
    return result;
}

PyDoc_STRVAR(bucket_counts_doc,
"bucket_counts(magnitudes, scale, buckets)\n\n"
"Count each float of magnitudes (each > 0) into buckets (index -> count), its index at scale (> 0) being\n"
"ceil(log2(v) * 2**scale) - 1: the OTLP exponential histogram's upper-inclusive bucket, as\n"
"ExpHistogram._bucket_all's bulk path computes it in Python (the same libm log2 and ceil).");

/* Indices are counted in a local array when they span at most this many; otherwise one by one in the dict. */
#define MAX_SPAN 65536

static int
add_count(PyObject *buckets, long index, Py_ssize_t n)
{
    PyObject *key = PyLong_FromLong(index);
    if (key == NULL)
        return -1;
    PyObject *old = PyDict_GetItemWithError(buckets, key);  /* borrowed */
    if (old == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    Py_ssize_t before = 0;
    if (old != NULL) {
        before = PyLong_AsSsize_t(old);
        if (before == -1 && PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
    }
    PyObject *count = PyLong_FromSsize_t(before + n);
    if (count == NULL) {
        Py_DECREF(key);
        return -1;
    }
    int result = PyDict_SetItem(buckets, key, count);
    Py_DECREF(key);
    Py_DECREF(count);
    return result;
}

/* Count each of magnitudes[0, m) (finite, > 0) into buckets (index -> count), the index being
 * ceil(log2(v) * factor) - 1 with factor = 2**scale: in a local array when the indexes span at most MAX_SPAN,
 * otherwise one by one in the dict. 0, or -1 with an exception set. */
static int
count_magnitudes(PyObject *buckets, const double *magnitudes, Py_ssize_t m, double factor)
{
    if (m == 0)
        return 0;
    long *indexes = PyMem_Malloc(sizeof(long) * (size_t)m);
    if (indexes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    long low = 0, high = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        /* |log2(v)| <= 1075 and scale <= 20: the product fits a long exactly, as Python's int does. */
        long index = (long)ceil(log2(magnitudes[i]) * factor) - 1;
        indexes[i] = index;
        if (i == 0 || index < low)
            low = index;
        if (i == 0 || index > high)
            high = index;
    }
    int failed = 0;
    if (high - low < MAX_SPAN) {
        Py_ssize_t *counts = PyMem_Calloc((size_t)(high - low + 1), sizeof(Py_ssize_t));
        if (counts == NULL) {
            PyMem_Free(indexes);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < m; i++)
            counts[indexes[i] - low]++;
        for (long index = low; index <= high && !failed; index++)
            if (counts[index - low])
                failed = add_count(buckets, index, counts[index - low]) < 0;
        PyMem_Free(counts);
    } else {
        for (Py_ssize_t i = 0; i < m && !failed; i++)
            failed = add_count(buckets, indexes[i], 1) < 0;
    }
    PyMem_Free(indexes);
    return failed ? -1 : 0;
}

static PyObject *
bucket_counts(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes("bucket_counts", nargs, 3))
        return NULL;
    PyObject *magnitudes = args[0], *buckets = args[2];
    if (!PyList_CheckExact(magnitudes) || !PyDict_CheckExact(buckets)) {
        PyErr_SetString(PyExc_TypeError, "bucket_counts(): magnitudes must be a list, buckets a dict");
        return NULL;
    }
    long scale = PyLong_AsLong(args[1]);
    if (scale == -1 && PyErr_Occurred())
        return NULL;
    if (scale < 1 || scale > 20) {
        PyErr_SetString(PyExc_ValueError, "bucket_counts(): scale must be from 1 to 20");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(magnitudes);
    if (n == 0)
        Py_RETURN_NONE;
    double *magnitudes_read = PyMem_Malloc(sizeof(double) * (size_t)n);
    if (magnitudes_read == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(magnitudes, i);
        if (!PyFloat_CheckExact(item)) {
            PyMem_Free(magnitudes_read);
            PyErr_Format(PyExc_TypeError, "bucket_counts(): a magnitude must be a float, not %.100s",
                         Py_TYPE(item)->tp_name);
            return NULL;
        }
        double v = PyFloat_AS_DOUBLE(item);
        if (!(v > 0.0) || !isfinite(v)) {
            PyMem_Free(magnitudes_read);
            PyErr_SetString(PyExc_ValueError, "bucket_counts(): a magnitude must be finite and > 0");
            return NULL;
        }
        magnitudes_read[i] = v;
    }
    int failed = count_magnitudes(buckets, magnitudes_read, n, (double)(1L << scale));
    PyMem_Free(magnitudes_read);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fold_values_doc,
"fold_values(values, scale, total, positive, negative) -> (count, total, low, high, zeros) or None\n\n"
"ExpHistogram.record_all's work on a group's values in one C pass: each value as float() makes it, their\n"
"sum from total in order, min, max, the zeros, and each other value counted into positive or negative\n"
"(index -> count) at scale (1-20) as bucket_counts does. None, with nothing changed, when a value is not\n"
"a number float() takes (TypeError, ValueError, OverflowError), is not finite, or the sum overflows.");

static PyObject *
fold_values(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes("fold_values", nargs, 5))
        return NULL;
    PyObject *values = args[0], *positive = args[3], *negative = args[4];
    if (!PyList_CheckExact(values) || !PyDict_CheckExact(positive) || !PyDict_CheckExact(negative)) {
        PyErr_SetString(PyExc_TypeError, "fold_values(): values must be a list, positive and negative dicts");
        return NULL;
    }
    long scale = PyLong_AsLong(args[1]);
    if (scale == -1 && PyErr_Occurred())
        return NULL;
    if (scale < 1 || scale > 20) {
        PyErr_SetString(PyExc_ValueError, "fold_values(): scale must be from 1 to 20");
        return NULL;
    }
    double total = PyFloat_AsDouble(args[2]);
    if (total == -1.0 && PyErr_Occurred())
        return NULL;
    /* float() of each value can run Python code (a __float__), so the list is copied first. */
    PyObject *items = PyList_GetSlice(values, 0, PyList_GET_SIZE(values));
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n == 0) {
        Py_DECREF(items);
        Py_RETURN_NONE;
    }
    double *floats = PyMem_Malloc(sizeof(double) * (size_t)n);
    if (floats == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    double low = 0.0, high = 0.0;
    Py_ssize_t zeros = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        double v;
        if (PyFloat_CheckExact(item)) {
            v = PyFloat_AS_DOUBLE(item);
        } else {  /* exactly float(item): its conversions and its errors */
            PyObject *converted = PyObject_CallOneArg((PyObject *)&PyFloat_Type, item);
            if (converted == NULL) {
                PyMem_Free(floats);
                Py_DECREF(items);
                if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)
                        || PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    PyErr_Clear();
                    Py_RETURN_NONE;
                }
                return NULL;
            }
            v = PyFloat_AS_DOUBLE(converted);
            Py_DECREF(converted);
        }
        floats[i] = v;
        total += v;  /* in order, from total: as sum(floats, total) */
        if (i == 0 || v < low)
            low = v;
        if (i == 0 || v > high)
            high = v;
        if (v == 0.0)
            zeros++;
    }
    Py_DECREF(items);
    if (!isfinite(total)) {  /* a value is inf or nan, or the sum overflowed */
        PyMem_Free(floats);
        Py_RETURN_NONE;
    }
    /* Each side's magnitudes (the values > 0, then minus those < 0), counted into its buckets. */
    double *side_magnitudes = PyMem_Malloc(sizeof(double) * (size_t)n);
    if (side_magnitudes == NULL) {
        PyMem_Free(floats);
        return PyErr_NoMemory();
    }
    int failed = 0;
    for (int side = 0; side < 2 && !failed; side++) {
        Py_ssize_t m = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            double v = side ? -floats[i] : floats[i];
            if (v > 0.0)
                side_magnitudes[m++] = v;
        }
        failed = count_magnitudes(side ? negative : positive, side_magnitudes, m, (double)(1L << scale));
    }
    PyMem_Free(side_magnitudes);
    PyMem_Free(floats);
    if (failed)
        return NULL;
    return Py_BuildValue("(ndddn)", n, total, low, high, zeros);
}

PyDoc_STRVAR(sum_values_doc,
"sum_values(values, start, nonnegative) -> float or None\n\n"
"sum(values, start) as the builtin adds floats and ints (each int that fits a C long as that long's double,\n"
"in order, from the float start), when every value is a float or such an int (exact float, or any int),\n"
"none is below zero if nonnegative, and the total is finite; else None (the caller's general path decides),\n"
"and None for no values. One pass, no Python code run: a counter's or a gauge's group folded at once.");

static PyObject *
sum_values(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes("sum_values", nargs, 3))
        return NULL;
    PyObject *values = args[0];
    if (!PyList_CheckExact(values) || !PyFloat_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "sum_values(): values must be a list, start a float");
        return NULL;
    }
    int nonnegative = PyObject_IsTrue(args[2]);
    if (nonnegative < 0)
        return NULL;
    double total = PyFloat_AS_DOUBLE(args[1]);
    if (PyList_GET_SIZE(values) == 0)
        Py_RETURN_NONE;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(values); k++) {
        PyObject *item = PyList_GET_ITEM(values, k);
        double v;
        if (PyFloat_CheckExact(item)) {
            v = PyFloat_AS_DOUBLE(item);
        } else if (PyLong_Check(item)) {  /* (as the builtin sum: an int, bools included, read as a C long) */
            int overflow;
            long x = PyLong_AsLongAndOverflow(item, &overflow);
            if (overflow)
                Py_RETURN_NONE;
            if (x == -1 && PyErr_Occurred())
                return NULL;
            v = (double)x;
        } else {
            Py_RETURN_NONE;
        }
        if (nonnegative && v < 0)
            Py_RETURN_NONE;
        total += v;
    }
    if (!isfinite(total))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(total);
}

static PyMethodDef methods[] = {
    {"group_records", (PyCFunction)(void (*)(void))group_records, METH_FASTCALL, group_records_doc},
    {"bucket_counts", (PyCFunction)(void (*)(void))bucket_counts, METH_FASTCALL, bucket_counts_doc},
    {"fold_values", (PyCFunction)(void (*)(void))fold_values, METH_FASTCALL, fold_values_doc},
    {"sum_values", (PyCFunction)(void (*)(void))sum_values, METH_FASTCALL, sum_values_doc},
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

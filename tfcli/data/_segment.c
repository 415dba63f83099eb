/* Words -> subword ids for BPE and Unigram models, id for id what HF tokenizers gives.
 *
 * The native half of tfcli.data.line_encoder (native_segmenter): the Python side reads a tokenizer.json's model once
 * and hands its tables here (string -> id, merge pairs, scores); `encode` then segments a whole
 * batch of distinct words in one call and returns flat ids and per-word counts as bytes, so
 * no Python object is built per token.  The algorithms follow HF tokenizers' (0.15 - 0.23):
 *
 *   BPE      characters looked up one by one (byte fallback <0xXX> for a missing one when
 *            enabled, else <unk>, consecutive ones fused when fuse_unk); then merges applied
 *            from a min-heap keyed (rank, position), an entry being skipped when its pair no
 *            longer yields the same new id; ignore_merges takes a whole-word piece first.
 *   Unigram  the single-pass Viterbi of sentencepiece's optimized encoder: pieces found by a
 *            trie walk in increasing length, a candidate replacing the best only when strictly
 *            better (so the first found wins a tie), an unknown character scored min - 10 when
 *            no single-character piece starts there; on the way back runs of <unk> are fused,
 *            and a fused run that is no piece becomes its bytes (byte fallback) or <unk>.
 *
 * Strings are compared as UTF-8 bytes, as the Rust code does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- a byte string -> int32 map (open addressing) --------------------------------------- */

typedef struct {
    char *text;       /* the keys, back to back */
    int64_t *start;   /* key i is text[start[i] : start[i] + len[i]] */
    int32_t *len;
    int32_t *value;
    int64_t *slot;    /* -1 or a key index; size mask + 1 */
    uint64_t mask;
    int64_t n;
} StrMap;

static uint64_t hash_bytes(const char *s, Py_ssize_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n; /* 8 bytes a step, then a final mix */
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        h = (h ^ x) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    if (i < n) {
        uint64_t x = 0;
        memcpy(&x, s + i, n - i);
        h = (h ^ x) * 0xc4ceb9fe1a85ec53ULL;
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 32);
}

static void strmap_free(StrMap *m) {
    free(m->text); free(m->start); free(m->len); free(m->value); free(m->slot);
    memset(m, 0, sizeof(*m));
}

/* Returns the value of key s[0:n], or -1. */
static int32_t strmap_get(const StrMap *m, const char *s, Py_ssize_t n) {
    if (!m->slot) return -1;
    uint64_t i = hash_bytes(s, n) & m->mask;
    for (;;) {
        int64_t k = m->slot[i];
        if (k < 0) return -1;
        if (m->len[k] == n && memcmp(m->text + m->start[k], s, n) == 0) return m->value[k];
        i = (i + 1) & m->mask;
    }
}

/* From a dict str -> int (its keys are distinct, as in the Rust HashMap). 0 or -1 (error set). */
static int strmap_from_dict(StrMap *m, PyObject *dict) {
    memset(m, 0, sizeof(*m));
    Py_ssize_t n = PyDict_Size(dict), pos = 0, total = 0;
    PyObject *key, *val;
    while (PyDict_Next(dict, &pos, &key, &val)) {
        Py_ssize_t len;
        if (!PyUnicode_Check(key) || !PyUnicode_AsUTF8AndSize(key, &len)) {
            PyErr_SetString(PyExc_TypeError, "vocabulary keys must be str");
            return -1;
        }
        total += len;
    }
    uint64_t size = 16;
    while (size < (uint64_t)(2 * n + 2)) size <<= 1;
    m->text = malloc(total + 1);
    m->start = malloc(sizeof(int64_t) * (n + 1));
    m->len = malloc(sizeof(int32_t) * (n + 1));
    m->value = malloc(sizeof(int32_t) * (n + 1));
    m->slot = malloc(sizeof(int64_t) * size);
    if (!m->text || !m->start || !m->len || !m->value || !m->slot) {
        strmap_free(m);
        PyErr_NoMemory();
        return -1;
    }
    memset(m->slot, 0xff, sizeof(int64_t) * size);
    m->mask = size - 1;
    int64_t off = 0;
    pos = 0;
    while (PyDict_Next(dict, &pos, &key, &val)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(key, &len);
        long v = PyLong_AsLong(val);
        if (v == -1 && PyErr_Occurred()) { strmap_free(m); return -1; }
        memcpy(m->text + off, s, len);
        m->start[m->n] = off; m->len[m->n] = (int32_t)len; m->value[m->n] = (int32_t)v;
        uint64_t i = hash_bytes(s, len) & m->mask;
        while (m->slot[i] >= 0) i = (i + 1) & m->mask;
        m->slot[i] = m->n++;
        off += len;
    }
    return 0;
}

/* ---- an (a, b) -> (rank, new id) map for BPE merges ------------------------------------- */

typedef struct {
    struct PairEntry { uint64_t key; int32_t rank, new_id; } *e; /* key (a << 32 | b) + 1, 0 = empty */
    uint64_t mask;
} PairMap;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static int pairmap_get(const PairMap *m, int32_t a, int32_t b, int32_t *rank, int32_t *new_id) {
    if (!m->e) return 0;
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t i = mix64(k) & m->mask;
    while (m->e[i].key) {
        if (m->e[i].key == k) { *rank = m->e[i].rank; *new_id = m->e[i].new_id; return 1; }
        i = (i + 1) & m->mask;
    }
    return 0;
}

/* ---- the model ------------------------------------------------------------------------- */

enum { KIND_BPE = 1, KIND_UNIGRAM = 2 };

struct Slot { uint64_t hash; Py_ssize_t key_off, ids_off; int32_t key_len, ids_len; };

typedef struct {
    int kind;
    StrMap vocab;           /* piece -> id (BPE: the vocab; Unigram: token_to_ids) */
    int32_t unk_id;         /* -1: none */
    int fuse_unk, ignore_merges;
    int32_t byte_ids[256];  /* id of <0xXX>, -1 where missing or no byte fallback */
    int byte_fallback;
    PairMap merges;         /* BPE */
    /* Unigram: a trie over piece bytes; the root's children in a table, the others in a hash
       (node << 8 | byte) + 1 -> child */
    struct TEntry { uint32_t key; int32_t child; } *trie; uint64_t tmask; int tshift;
    int32_t troot[256];
    int32_t *tpiece;        /* node -> piece id ending there, or -1 */
    double *score;          /* id -> score */
    double unk_score;
    /* the word cache of encode_rows: word bytes -> ids, cleared when it passes its limit */
    struct Slot *slots; uint64_t smask; Py_ssize_t nwords;
    char *keys; Py_ssize_t keys_len, keys_cap;
    int32_t *cids; Py_ssize_t cids_len, cids_cap;
} Model;

static void model_free(Model *m) {
    strmap_free(&m->vocab);
    free(m->merges.e);
    free(m->trie); free(m->tpiece); free(m->score);
    free(m->slots); free(m->keys); free(m->cids);
    free(m);
}

static void capsule_free(PyObject *cap) {
    Model *m = PyCapsule_GetPointer(cap, "tfcli.segment.Model");
    if (m) model_free(m);
}

static int read_byte_ids(Model *m, PyObject *byte_ids) {
    for (int i = 0; i < 256; i++) m->byte_ids[i] = -1;
    m->byte_fallback = byte_ids != Py_None;
    if (!m->byte_fallback) return 0;
    if (!PyList_Check(byte_ids) || PyList_GET_SIZE(byte_ids) != 256) {
        PyErr_SetString(PyExc_ValueError, "byte_ids must be None or a list of 256 ints");
        return -1;
    }
    for (int i = 0; i < 256; i++) {
        long v = PyLong_AsLong(PyList_GET_ITEM(byte_ids, i));
        if (v == -1 && PyErr_Occurred()) return -1;
        m->byte_ids[i] = (int32_t)v;
    }
    return 0;
}

/* bpe(vocab: dict, merges: bytes (int32 a, b, rank, new_id per merge), unk_id, fuse_unk,
 *     byte_ids: list | None, ignore_merges) -> capsule */
static PyObject *py_bpe(PyObject *self, PyObject *args) {
    PyObject *vocab, *byte_ids;
    Py_buffer mg;
    int unk_id, fuse_unk, ignore_merges;
    if (!PyArg_ParseTuple(args, "O!y*ipOp", &PyDict_Type, &vocab, &mg, &unk_id, &fuse_unk,
                          &byte_ids, &ignore_merges))
        return NULL;
    Model *m = calloc(1, sizeof(Model));
    if (!m) { PyBuffer_Release(&mg); return PyErr_NoMemory(); }
    m->kind = KIND_BPE; m->unk_id = unk_id; m->fuse_unk = fuse_unk;
    m->ignore_merges = ignore_merges;
    if (strmap_from_dict(&m->vocab, vocab) < 0 || read_byte_ids(m, byte_ids) < 0) goto fail;
    Py_ssize_t n = mg.len / (4 * sizeof(int32_t));
    const int32_t *q = mg.buf;
    uint64_t size = 16;
    while (size < (uint64_t)(2 * n + 2)) size <<= 1;
    m->merges.e = calloc(size, sizeof(struct PairEntry));
    if (!m->merges.e) { PyErr_NoMemory(); goto fail; }
    m->merges.mask = size - 1;
    for (Py_ssize_t j = 0; j < n; j++) { /* later entries overwrite: a Rust HashMap collect */
        const int32_t *r = q + 4 * j;
        uint64_t k = (((uint64_t)(uint32_t)r[0] << 32) | (uint32_t)r[1]) + 1;
        uint64_t i = mix64(k) & m->merges.mask;
        struct PairEntry *e = m->merges.e;
        while (e[i].key && e[i].key != k) i = (i + 1) & m->merges.mask;
        e[i].key = k; e[i].rank = r[2]; e[i].new_id = r[3];
    }
    PyBuffer_Release(&mg);
    return PyCapsule_New(m, "tfcli.segment.Model", capsule_free);
fail:
    PyBuffer_Release(&mg);
    model_free(m);
    return NULL;
}

static uint64_t trie_slot(const Model *m, uint32_t k) {
    return ((uint64_t)k * 0x9e3779b97f4a7c15ULL) >> m->tshift;
}

static int32_t trie_child(const Model *m, int32_t node, unsigned char c) {
    if (node == 0) return m->troot[c];
    uint32_t k = (((uint32_t)node << 8) | c) + 1;
    for (uint64_t i = trie_slot(m, k);; i = (i + 1) & m->tmask) {
        if (m->trie[i].key == k) return m->trie[i].child;
        if (!m->trie[i].key) return -1;
    }
}

/* unigram(token_to_ids: dict, scores: bytes (float64 per id), unk_id, unk_score, byte_ids)
 * -> capsule */
static PyObject *py_unigram(PyObject *self, PyObject *args) {
    PyObject *vocab, *byte_ids;
    Py_buffer sc;
    int unk_id;
    double unk_score;
    if (!PyArg_ParseTuple(args, "O!y*idO", &PyDict_Type, &vocab, &sc, &unk_id, &unk_score,
                          &byte_ids))
        return NULL;
    Model *m = calloc(1, sizeof(Model));
    if (!m) { PyBuffer_Release(&sc); return PyErr_NoMemory(); }
    m->kind = KIND_UNIGRAM; m->unk_id = unk_id; m->fuse_unk = 1; m->unk_score = unk_score;
    if (strmap_from_dict(&m->vocab, vocab) < 0 || read_byte_ids(m, byte_ids) < 0) goto fail;
    Py_ssize_t n_ids = sc.len / sizeof(double);
    m->score = malloc(sizeof(double) * (n_ids + 1));
    int64_t total = 0;
    for (int64_t k = 0; k < m->vocab.n; k++) total += m->vocab.len[k];
    uint64_t size = 16;
    int bits = 4;
    while (size < (uint64_t)(2 * total + 2)) { size <<= 1; bits++; }
    if (total >= (1 << 23)) { PyErr_SetString(PyExc_ValueError, "vocabulary too large"); goto fail; }
    m->trie = calloc(size, sizeof(struct TEntry));
    m->tpiece = malloc(sizeof(int32_t) * (total + 1));
    if (!m->score || !m->trie || !m->tpiece) { PyErr_NoMemory(); goto fail; }
    memcpy(m->score, sc.buf, sizeof(double) * n_ids);
    m->tmask = size - 1;
    m->tshift = 64 - bits;
    for (int c = 0; c < 256; c++) m->troot[c] = -1;
    int32_t nodes = 1;
    m->tpiece[0] = -1;
    for (int64_t k = 0; k < m->vocab.n; k++) {
        const unsigned char *s = (const unsigned char *)m->vocab.text + m->vocab.start[k];
        int32_t v = m->vocab.value[k];
        if (v < 0 || v >= n_ids) {
            PyErr_SetString(PyExc_ValueError, "piece id out of range of the scores");
            goto fail;
        }
        if (m->vocab.len[k] == 0) continue;
        int32_t node = 0;
        for (int32_t j = 0; j < m->vocab.len[k]; j++) {
            int32_t child = trie_child(m, node, s[j]);
            if (child < 0) {
                child = nodes;
                m->tpiece[nodes++] = -1;
                if (node == 0) {
                    m->troot[s[j]] = child;
                } else {
                    uint32_t key = (((uint32_t)node << 8) | s[j]) + 1;
                    uint64_t i = trie_slot(m, key);
                    while (m->trie[i].key) i = (i + 1) & m->tmask;
                    m->trie[i].key = key; m->trie[i].child = child;
                }
            }
            node = child;
        }
        m->tpiece[node] = v;
    }
    PyBuffer_Release(&sc);
    return PyCapsule_New(m, "tfcli.segment.Model", capsule_free);
fail:
    PyBuffer_Release(&sc);
    model_free(m);
    return NULL;
}

/* ---- growable scratch ------------------------------------------------------------------- */

typedef struct { int32_t *v; Py_ssize_t n, cap; } Ids;

static int ids_push(Ids *o, int32_t x) {
    if (o->n == o->cap) {
        Py_ssize_t cap = o->cap ? 2 * o->cap : 1024;
        int32_t *v = realloc(o->v, cap * sizeof(int32_t));
        if (!v) return -1;
        o->v = v; o->cap = cap;
    }
    o->v[o->n++] = x;
    return 0;
}

typedef struct { int32_t id, prev, next, len; } Sym;
typedef struct { uint64_t key; int32_t new_id; } Entry; /* key = rank << 32 | pos */

typedef struct {
    Sym *sym; Entry *heap; double *best; int32_t *from, *bid;
    Py_ssize_t cap;
} Scratch;

static int scratch_fit(Scratch *s, Py_ssize_t n) {
    if (n + 1 <= s->cap) return 0;
    Py_ssize_t cap = 2 * (n + 1);
    /* a word of n bytes has at most n symbols; each merge pushes at most 2 heap entries */
    Sym *sym = realloc(s->sym, cap * sizeof(Sym)); if (sym) s->sym = sym;
    Entry *heap = realloc(s->heap, 3 * cap * sizeof(Entry)); if (heap) s->heap = heap;
    double *best = realloc(s->best, cap * sizeof(double)); if (best) s->best = best;
    int32_t *from = realloc(s->from, cap * sizeof(int32_t)); if (from) s->from = from;
    int32_t *bid = realloc(s->bid, cap * sizeof(int32_t)); if (bid) s->bid = bid;
    if (!sym || !heap || !best || !from || !bid) return -1;
    s->cap = cap;
    return 0;
}

static void heap_push(Entry *h, Py_ssize_t *n, Entry e) {
    Py_ssize_t i = (*n)++;
    while (i > 0) {
        Py_ssize_t p = (i - 1) / 2;
        if (h[p].key <= e.key) break;
        h[i] = h[p]; i = p;
    }
    h[i] = e;
}

static Entry heap_pop(Entry *h, Py_ssize_t *n) {
    Entry top = h[0], last = h[--(*n)];
    Py_ssize_t i = 0;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1].key < h[c].key) c++;
        if (last.key <= h[c].key) break;
        h[i] = h[c]; i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static Py_ssize_t add_sym(Sym *sym, Py_ssize_t n, int32_t id, int32_t len) {
    sym[n].id = id; sym[n].len = len; sym[n].prev = (int32_t)n - 1; sym[n].next = -1;
    if (n > 0) sym[n - 1].next = (int32_t)n;
    return n + 1;
}

static void push_pair(const Model *m, Scratch *s, Py_ssize_t *nh, int32_t pos) {
    int32_t rank, new_id;
    if (pairmap_get(&m->merges, s->sym[pos].id, s->sym[s->sym[pos].next].id, &rank, &new_id)) {
        Entry e = {((uint64_t)(uint32_t)rank << 32) | (uint32_t)pos, new_id};
        heap_push(s->heap, nh, e);
    }
}

static int bpe_word(const Model *m, Scratch *s, const char *w, Py_ssize_t n, Ids *out) {
    if (m->ignore_merges) {
        int32_t id = strmap_get(&m->vocab, w, n);
        if (id >= 0) return ids_push(out, id);
    }
    Sym *sym = s->sym;
    Py_ssize_t ns = 0;
    int32_t unk_len = 0; /* a pending <unk> of this many bytes */
    for (Py_ssize_t i = 0; i < n;) {
        int32_t cl = utf8_len((unsigned char)w[i]);
        if (i + cl > n) cl = (int32_t)(n - i);
        int32_t id = strmap_get(&m->vocab, w + i, cl);
        if (id >= 0) {
            if (unk_len) { ns = add_sym(sym, ns, m->unk_id, unk_len); unk_len = 0; }
            ns = add_sym(sym, ns, id, cl);
        } else {
            int bytes_ok = m->byte_fallback;
            for (int32_t j = 0; bytes_ok && j < cl; j++)
                bytes_ok = m->byte_ids[(unsigned char)w[i + j]] >= 0;
            if (bytes_ok) { /* (a pending <unk> stays pending, as in HF) */
                for (int32_t j = 0; j < cl; j++)
                    ns = add_sym(sym, ns, m->byte_ids[(unsigned char)w[i + j]], 1);
            } else if (m->unk_id >= 0) {
                if (unk_len && !m->fuse_unk) { ns = add_sym(sym, ns, m->unk_id, unk_len); unk_len = 0; }
                unk_len += cl;
            }
        }
        i += cl;
    }
    if (unk_len) ns = add_sym(sym, ns, m->unk_id, unk_len);
    Py_ssize_t nh = 0;
    for (Py_ssize_t p = 0; p + 1 < ns; p++) push_pair(m, s, &nh, (int32_t)p);
    while (nh) {
        Entry top = heap_pop(s->heap, &nh);
        int32_t pos = (int32_t)(top.key & 0xffffffffu), rank, new_id;
        if (sym[pos].len == 0 || sym[pos].next < 0) continue;
        int32_t nx = sym[pos].next;
        if (!pairmap_get(&m->merges, sym[pos].id, sym[nx].id, &rank, &new_id) ||
            new_id != top.new_id)
            continue; /* an expired entry */
        Sym right = sym[nx];
        sym[pos].id = top.new_id; sym[pos].len += right.len; sym[pos].next = right.next;
        sym[nx].len = 0;
        if (right.next >= 0) sym[right.next].prev = pos;
        if (sym[pos].prev >= 0) push_pair(m, s, &nh, sym[pos].prev);
        if (sym[pos].next >= 0) push_pair(m, s, &nh, pos);
    }
    for (Py_ssize_t p = 0; p < ns; p++)
        if (sym[p].len && ids_push(out, sym[p].id) < 0) return -1;
    return 0;
}

/* The ids of one fused run of unknown text w[a:b] (Unigram's tokenize). */
static int unigram_span(const Model *m, const char *w, Py_ssize_t a, Py_ssize_t b, Ids *out) {
    int32_t id = strmap_get(&m->vocab, w + a, b - a);
    if (id >= 0) return ids_push(out, id);
    int bytes_ok = m->byte_fallback;
    for (Py_ssize_t j = a; bytes_ok && j < b; j++) bytes_ok = m->byte_ids[(unsigned char)w[j]] >= 0;
    if (bytes_ok) { /* backwards: unigram_word reverses its ids at the end */
        for (Py_ssize_t j = b - 1; j >= a; j--)
            if (ids_push(out, m->byte_ids[(unsigned char)w[j]]) < 0) return -1;
        return 0;
    }
    return ids_push(out, m->unk_id);
}

static int unigram_word(const Model *m, Scratch *s, const char *w, Py_ssize_t n, Ids *out) {
    double *best = s->best;
    int32_t *from = s->from, *bid = s->bid;
    for (Py_ssize_t i = 0; i <= n; i++) { from[i] = -1; best[i] = 0.0; bid[i] = 0; }
    for (Py_ssize_t at = 0; at < n;) {
        double base = best[at];
        int32_t cl = utf8_len((unsigned char)w[at]);
        if (at + cl > n) cl = (int32_t)(n - at);
        int single = 0;
        int32_t node = 0;
        for (Py_ssize_t k = at; k < n; k++) {
            node = trie_child(m, node, (unsigned char)w[k]);
            if (node < 0) break;
            int32_t id = m->tpiece[node];
            if (id < 0) continue;
            Py_ssize_t end = k + 1;
            double cand = m->score[id] + base;
            if (from[end] < 0 || cand > best[end]) { best[end] = cand; from[end] = (int32_t)at; bid[end] = id; }
            if (end - at == cl) single = 1;
        }
        if (!single) {
            Py_ssize_t end = at + cl;
            double cand = m->unk_score + base;
            if (from[end] < 0 || cand > best[end]) { best[end] = cand; from[end] = (int32_t)at; bid[end] = m->unk_id; }
        }
        at += cl;
    }
    /* back from the end, pieces in reverse; then reversed in place */
    Py_ssize_t first = out->n, end = n, run_end = -1;
    while (end > 0) {
        Py_ssize_t start = from[end];
        if (bid[end] == m->unk_id) { /* fuse_unk: extend the run of unknowns */
            if (run_end < 0) run_end = end;
        } else {
            if (run_end >= 0 && unigram_span(m, w, end, run_end, out) < 0) return -1;
            run_end = -1;
            if (ids_push(out, bid[end]) < 0) return -1;
        }
        end = start;
    }
    if (run_end >= 0 && unigram_span(m, w, 0, run_end, out) < 0) return -1;
    for (Py_ssize_t i = first, j = out->n - 1; i < j; i++, j--) {
        int32_t t = out->v[i]; out->v[i] = out->v[j]; out->v[j] = t;
    }
    return 0;
}

/* encode(model, words: list[str], prefix: str) -> (ids: bytes of uint32, counts: bytes of
 * int64): the ids of prefix + word for each word, back to back, and how many each has. */
static PyObject *py_encode(PyObject *self, PyObject *args) {
    PyObject *cap, *words;
    const char *prefix;
    Py_ssize_t plen;
    if (!PyArg_ParseTuple(args, "OO!s#", &cap, &PyList_Type, &words, &prefix, &plen)) return NULL;
    Model *m = PyCapsule_GetPointer(cap, "tfcli.segment.Model");
    if (!m) return NULL;
    Py_ssize_t nw = PyList_GET_SIZE(words);
    int64_t *counts = malloc(sizeof(int64_t) * (nw + 1));
    Ids out = {0};
    Scratch s = {0};
    char *buf = NULL;
    Py_ssize_t bufcap = 0;
    PyObject *result = NULL;
    if (!counts) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < nw; i++) {
        PyObject *o = PyList_GET_ITEM(words, i);
        Py_ssize_t len;
        const char *u = PyUnicode_Check(o) ? PyUnicode_AsUTF8AndSize(o, &len) : NULL;
        if (!u) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "words must be str");
            goto done;
        }
        Py_ssize_t n = plen + len;
        if (n + 1 > bufcap) {
            bufcap = 2 * (n + 1);
            char *b = realloc(buf, bufcap);
            if (!b) { PyErr_NoMemory(); goto done; }
            buf = b;
        }
        memcpy(buf, prefix, plen);
        memcpy(buf + plen, u, len);
        if (scratch_fit(&s, n) < 0) { PyErr_NoMemory(); goto done; }
        Py_ssize_t before = out.n;
        int rc = n == 0 ? 0
                 : m->kind == KIND_BPE ? bpe_word(m, &s, buf, n, &out)
                                       : unigram_word(m, &s, buf, n, &out);
        if (rc < 0) { PyErr_NoMemory(); goto done; }
        counts[i] = out.n - before;
    }
    result = Py_BuildValue("(y#y#)", (const char *)out.v, (Py_ssize_t)(out.n * sizeof(int32_t)),
                           (const char *)counts, (Py_ssize_t)(nw * sizeof(int64_t)));
done:
    free(counts); free(out.v); free(buf);
    free(s.sym); free(s.heap); free(s.best); free(s.from); free(s.bid);
    return result;
}

/* ---- whole rows: the Metaspace split and a word cache ----------------------------------- */

static int grow(void **p, Py_ssize_t *cap, Py_ssize_t need, size_t item) {
    if (need <= *cap) return 0;
    Py_ssize_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * item);
    if (!q) return -1;
    *p = q; *cap = c;
    return 0;
}

/* The cached ids of word w[0:n] (n bytes after the word-start mark), segmenting it on a miss.
 * Returns the slot or NULL on memory failure. */
static struct Slot *cached_word(Model *m, Scratch *s, char **buf, Py_ssize_t *bufcap,
                                const char *w, Py_ssize_t n, Py_ssize_t limit) {
    uint64_t h = hash_bytes(w, n) | 1; /* 0 marks an empty slot */
    uint64_t i = h & m->smask;
    for (;;) {
        struct Slot *e = &m->slots[i];
        if (!e->hash) break;
        if (e->hash == h && e->key_len == n && memcmp(m->keys + e->key_off, w, n) == 0) return e;
        i = (i + 1) & m->smask;
    }
    if (m->nwords >= limit) { /* full: start over (memory stays flat in the corpus size) */
        memset(m->slots, 0, (m->smask + 1) * sizeof(struct Slot));
        m->nwords = 0; m->keys_len = 0; m->cids_len = 0;
        i = h & m->smask;
    }
    static const char mark[] = "\xe2\x96\x81"; /* the model sees '▁' + word */
    Py_ssize_t len = n + 3;
    if (grow((void **)buf, bufcap, len + 1, 1) < 0 || scratch_fit(s, len) < 0 ||
        grow((void **)&m->keys, &m->keys_cap, m->keys_len + n, 1) < 0)
        return NULL;
    memcpy(*buf, mark, 3);
    memcpy(*buf + 3, w, n);
    Ids out = {m->cids, m->cids_len, m->cids_cap};
    int rc = m->kind == KIND_BPE ? bpe_word(m, s, *buf, len, &out) : unigram_word(m, s, *buf, len, &out);
    m->cids = out.v; m->cids_cap = out.cap;
    if (rc < 0) return NULL;
    struct Slot *e = &m->slots[i];
    e->hash = h; e->key_off = m->keys_len; e->key_len = (int32_t)n;
    e->ids_off = m->cids_len; e->ids_len = (int32_t)(out.n - m->cids_len);
    memcpy(m->keys + m->keys_len, w, n);
    m->keys_len += n; m->cids_len = out.n; m->nwords++;
    return e;
}

static int is_mark(const char *t, Py_ssize_t j, Py_ssize_t n) { /* '▁' at t[j] */
    return j + 2 < n && (unsigned char)t[j] == 0xe2 && (unsigned char)t[j + 1] == 0x96 &&
           (unsigned char)t[j + 2] == 0x81;
}

/* encode_rows(model, text: str, n_rows, prepend_all, squeeze, cache_words) -> (ids: bytes of
 * uint32, lengths: bytes of int64 per row).  text: n_rows non-empty normalized rows joined by
 * '\n'.  squeeze: first sentencepiece's extra-whitespace removal on each row (leading and
 * trailing ' ' dropped, runs of ' ' made one; a row left empty has no ids).  Then Metaspace:
 * a word starts after each ' ' or '▁' and at a row start (always with prepend_all, else
 * unless the row starts with a separator), and runs to the next separator or row end. */
static PyObject *py_encode_rows(PyObject *self, PyObject *args) {
    PyObject *cap, *text;
    Py_ssize_t n_rows, limit;
    int prepend_all, squeeze;
    if (!PyArg_ParseTuple(args, "OUnppn", &cap, &text, &n_rows, &prepend_all, &squeeze, &limit))
        return NULL;
    Model *m = PyCapsule_GetPointer(cap, "tfcli.segment.Model");
    if (!m) return NULL;
    Py_ssize_t n;
    const char *t = PyUnicode_AsUTF8AndSize(text, &n);
    if (!t) return NULL;
    if (limit < 16) limit = 16;
    if (!m->slots) {
        uint64_t size = 64;
        while (size < (uint64_t)(2 * limit + 2)) size <<= 1;
        m->slots = calloc(size, sizeof(struct Slot));
        if (!m->slots) return PyErr_NoMemory();
        m->smask = size - 1;
    }
    int64_t *lengths = calloc(n_rows + 1, sizeof(int64_t));
    Ids out = {0};
    Scratch s = {0};
    char *buf = NULL;
    Py_ssize_t bufcap = 0, row = 0;
    PyObject *result = NULL;
    if (!lengths) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i <= n; row++) { /* i: a row start */
        const char *nl = memchr(t + i, '\n', n - i);
        Py_ssize_t row_end = nl ? nl - t : n, j = i, stop = row_end;
        i = row_end + 1;
        if (squeeze) {
            while (j < stop && t[j] == ' ') j++;
            while (stop > j && t[stop - 1] == ' ') stop--;
            if (j == stop) continue; /* only spaces: no ids */
        }
        int in_word = prepend_all || !(j < stop && (t[j] == ' ' || is_mark(t, j, stop)));
        Py_ssize_t w0 = j;
        for (;;) {
            int end = j >= stop;
            int sep = end ? 0 : t[j] == ' ' ? 1 : is_mark(t, j, stop) ? 3 : 0;
            if (!end && !sep) { j++; continue; }
            if (in_word) {
                struct Slot *e = cached_word(m, &s, &buf, &bufcap, t + w0, j - w0, limit);
                if (!e || grow((void **)&out.v, &out.cap, out.n + e->ids_len, 4) < 0) {
                    PyErr_NoMemory();
                    goto done;
                }
                memcpy(out.v + out.n, m->cids + e->ids_off, e->ids_len * sizeof(int32_t));
                out.n += e->ids_len;
                if (row < n_rows) lengths[row] += e->ids_len;
            }
            if (end) break;
            j += sep;
            if (squeeze && sep == 1) while (j < stop && t[j] == ' ') j++;
            w0 = j; in_word = 1;
        }
    }
    if (row != n_rows) {
        PyErr_Format(PyExc_ValueError, "text has %zd rows, not %zd", row, n_rows);
        goto done;
    }
    result = Py_BuildValue("(y#y#)", (const char *)out.v, (Py_ssize_t)(out.n * sizeof(int32_t)),
                           (const char *)lengths, (Py_ssize_t)(n_rows * sizeof(int64_t)));
done:
    free(lengths); free(out.v); free(buf);
    free(s.sym); free(s.heap); free(s.best); free(s.from); free(s.bid);
    return result;
}

/* Whether a grapheme boundary is certain between c and any neighbour that is not itself a
 * joiner: c is in blocks without combining marks, Prepend, ZWJ, Hangul jamo or regional
 * indicators (Latin-1 and spacing modifiers, CJK punctuation and ideographs, kana, full-width
 * ASCII). Conservative on purpose: any other neighbour sends its row to HF's normalizer. */
static int plain_cp(Py_UCS4 c) {
    return c < 0x300 || (c >= 0x3000 && c <= 0x3029) || (c >= 0x3030 && c <= 0x3096) ||
           (c >= 0x30A0 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xFF01 && c <= 0xFF5E);
}

typedef struct { Py_UCS4 *v; Py_ssize_t n, cap; } ucs4buf;

static inline int ucs4_put(ucs4buf *b, Py_UCS4 c) {
    if (b->n == b->cap) {
        Py_ssize_t cap = b->cap ? 2 * b->cap : 1024;
        Py_UCS4 *v = realloc(b->v, cap * sizeof(Py_UCS4));
        if (!v) { PyErr_NoMemory(); return -1; }
        b->v = v; b->cap = cap;
    }
    b->v[b->n++] = c;
    return 0;
}

/* precompiled_apply(first, second, safe, repl, text) -> (text', rows).
 *
 * HF's Precompiled normalizer on each row of text (split at '\n') where that can be done
 * exactly here, and the rows it must still see: safe[c] = k > 0 marks a one-character key c
 * (a key that begins no longer one) of a plain block, to be replaced by repl[k - 1]. A row is
 * done here when each key position in it is such a c between plain neighbours (or the row's
 * ends): c is then a grapheme of its own, and HF's per-grapheme lookup replaces exactly it.
 * A row with any other position where a key may match (first[c] & 1, or first[c] & 2 and second[next c]) is left unchanged in
 * text' and listed in rows, for HF. text' is text itself when no row changed here. */
static PyObject *py_precompiled_apply(PyObject *self, PyObject *args) {
    Py_buffer fb, sb, kb;
    PyObject *repl, *text, *rows = NULL, *result = NULL;
    ucs4buf out = {NULL, 0, 0};
    if (!PyArg_ParseTuple(args, "y*y*y*O!U", &fb, &sb, &kb, &PyTuple_Type, &repl, &text))
        return NULL;
    if (fb.len < 0x110000 || sb.len < 0x110000 || kb.len < 0x110000) {
        PyErr_SetString(PyExc_ValueError, "tables must have 0x110000 entries");
        goto done;
    }
    const unsigned char *f = fb.buf, *sc = sb.buf, *safe = kb.buf;
    Py_ssize_t nrepl = PyTuple_GET_SIZE(repl);
    for (Py_ssize_t k = 0; k < nrepl; k++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(repl, k))) {
            PyErr_SetString(PyExc_TypeError, "replacements must be str");
            goto done;
        }
    if (!(rows = PyList_New(0))) goto done;
    int kind = PyUnicode_KIND(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), row = 0, copied = 0; /* text[:copied] is in out */
    /* one loop per string kind (1, 2 or 4 bytes a code point): no switch per character */
#define APPLY(T)                                                                           \
    do {                                                                                   \
        const T *d = (const T *)PyUnicode_DATA(text);                                      \
        for (Py_ssize_t a = 0; a <= n; row++) {                                            \
            Py_ssize_t b = a;                                                              \
            int cls = 0; /* 0: no key, 1: replaced here, 2: HF's */                         \
            for (; b < n && d[b] != '\n'; b++) {                                           \
                unsigned char x = f[d[b]];                                                 \
                if (!x || cls == 2) continue;                                              \
                if ((x & 2) && b + 1 < n && d[b + 1] != '\n' && sc[d[b + 1]]) cls = 2;      \
                else if (!(x & 1)) continue;                                               \
                else if (safe[d[b]] && safe[d[b]] <= nrepl &&                              \
                         (b == a || plain_cp(d[b - 1])) &&                                 \
                         (b + 1 == n || d[b + 1] == '\n' || plain_cp(d[b + 1]))) cls = 1;  \
                else cls = 2;                                                              \
            }                                                                              \
            if (cls == 2) {                                                                \
                PyObject *r = PyLong_FromSsize_t(row);                                     \
                if (!r || PyList_Append(rows, r) < 0) { Py_XDECREF(r); goto done; }        \
                Py_DECREF(r);                                                              \
            } else if (cls == 1) {                                                         \
                if (!out.v && !(out.v = malloc((out.cap = n + n / 4 + 64) * sizeof(Py_UCS4)))) { \
                    PyErr_NoMemory();                                                      \
                    goto done;                                                             \
                }                                                                          \
                for (; copied < a; copied++)                                               \
                    if (ucs4_put(&out, d[copied]) < 0) goto done;                          \
                for (Py_ssize_t i = a; i < b; i++) {                                       \
                    if (!((f[d[i]] & 1) && safe[d[i]])) {                                  \
                        if (ucs4_put(&out, d[i]) < 0) goto done;                           \
                        continue;                                                          \
                    }                                                                      \
                    PyObject *r = PyTuple_GET_ITEM(repl, safe[d[i]] - 1);                  \
                    int rk = PyUnicode_KIND(r);                                            \
                    const void *rd = PyUnicode_DATA(r);                                    \
                    for (Py_ssize_t j = 0; j < PyUnicode_GET_LENGTH(r); j++)               \
                        if (ucs4_put(&out, PyUnicode_READ(rk, rd, j)) < 0) goto done;      \
                }                                                                          \
                copied = b;                                                                \
            }                                                                              \
            a = b + 1;                                                                     \
        }                                                                                  \
        if (out.v != NULL)                                                                 \
            for (; copied < n; copied++)                                                   \
                if (ucs4_put(&out, d[copied]) < 0) goto done;                              \
    } while (0)
    switch (kind) {
    case PyUnicode_1BYTE_KIND: APPLY(Py_UCS1); break;
    case PyUnicode_2BYTE_KIND: APPLY(Py_UCS2); break;
    default: APPLY(Py_UCS4); break;
    }
#undef APPLY
    if (out.v == NULL) {
        result = Py_BuildValue("(OO)", text, rows);
    } else {
        PyObject *t = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out.v, out.n);
        if (t) { result = Py_BuildValue("(OO)", t, rows); Py_DECREF(t); }
    }
done:
    free(out.v);
    Py_XDECREF(rows);
    PyBuffer_Release(&fb); PyBuffer_Release(&sb); PyBuffer_Release(&kb);
    return result;
}

/* plain_keys(first) -> list[int]: the code points c of plain blocks (plain_cp) that are
 * one-character keys beginning no longer key (first[c] == 1): precompiled_apply's candidates. */
static PyObject *py_plain_keys(PyObject *self, PyObject *args) {
    Py_buffer fb;
    if (!PyArg_ParseTuple(args, "y*", &fb)) return NULL;
    PyObject *out = PyList_New(0);
    for (Py_UCS4 c = 0; out && c < 0x110000 && c < (Py_UCS4)fb.len; c++) {
        if (((const unsigned char *)fb.buf)[c] != 1 || !plain_cp(c)) continue;
        PyObject *v = PyLong_FromUnsignedLong(c);
        if (!v || PyList_Append(out, v) < 0) Py_CLEAR(out);
        Py_XDECREF(v);
    }
    PyBuffer_Release(&fb);
    return out;
}

/* ---- sentencepiece's precompiled character map --------------------------------------- */

/* keys(charsmap: bytes) -> list[bytes]: every key of the map's double-array trie (the
 * darts-clone layout sentencepiece writes: uint32 trie size, units, normalized strings). */
static uint32_t darts_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* The code point at s[0:n] and its byte length in *len (0 when s is empty or malformed). */
static uint32_t utf8_decode(const unsigned char *s, Py_ssize_t n, int *len) {
    int l = n <= 0 ? 0 : utf8_len(s[0]);
    *len = 0;
    if (l == 0 || l > n) return 0;
    uint32_t c = l == 1 ? s[0] : s[0] & (0x7f >> l);
    for (int i = 1; i < l; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c >= 0x110000) return 0;
    *len = l;
    return c;
}

/* Notes key k[0:n] in the screening tables (see charsmap_screen). */
static void mark_key(const unsigned char *k, Py_ssize_t n, unsigned char *f, unsigned char *sc) {
    int l1, l2;
    uint32_t c1 = utf8_decode(k, n, &l1);
    if (!l1) return; /* not UTF-8: can never match a str */
    if (l1 == n) { f[c1] |= 1; return; }
    uint32_t c2 = utf8_decode(k + l1, n - l1, &l2);
    f[c1] |= 2;
    if (l2) sc[c2] = 1;
    else memset(sc, 1, 0x110000); /* (malformed: every position needs a look) */
}

/* Every key below node pos: appended to out, or, when out is NULL, marked in f and sc. */
static int darts_walk(const uint32_t *units, uint32_t n, uint32_t pos, unsigned char *key,
                      int depth, PyObject *out, unsigned char *f, unsigned char *sc) {
    if (depth >= 64) return 0; /* keys are short; a deeper path would be a corrupt map */
    for (uint32_t label = 1; label < 256; label++) {
        uint32_t q = pos ^ label;
        if (q >= n || (units[q] & (0x80000000u | 0xffu)) != label) continue;
        key[depth] = (unsigned char)label;
        if (!out) { /* the screen needs the first two characters only: prune below them */
            int l1 = utf8_len(key[0]), len;
            if (depth + 1 == l1 && ((units[q] >> 8) & 1)) mark_key(key, l1, f, sc);
            if (depth + 1 > l1) {
                utf8_decode(key + l1, depth + 1 - l1, &len);
                if (len) { /* a second character completed: a longer key starts here */
                    mark_key(key, depth + 1, f, sc);
                    continue;
                }
            }
        } else if ((units[q] >> 8) & 1) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)key, depth + 1);
            if (!b || PyList_Append(out, b) < 0) { Py_XDECREF(b); return -1; }
            Py_DECREF(b);
        }
        if (darts_walk(units, n, q ^ darts_offset(units[q]), key, depth + 1, out, f, sc) < 0)
            return -1;
    }
    return 0;
}

static PyObject *py_charsmap_keys(PyObject *self, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*", &b)) return NULL;
    PyObject *out = PyList_New(0);
    uint32_t size = 0;
    if (out && b.len >= 4) memcpy(&size, b.buf, 4);
    if (out && size >= 4 && 4 + (Py_ssize_t)size <= b.len) {
        const uint32_t *units = (const uint32_t *)((const char *)b.buf + 4);
        unsigned char key[64];
        if (darts_walk(units, size / 4, darts_offset(units[0]), key, 0, out, NULL, NULL) < 0)
            Py_CLEAR(out);
    }
    PyBuffer_Release(&b);
    return out;
}

/* charsmap_screen(charsmap: bytes) -> (first: bytes, second: bytes), 0x110000 bytes each:
 * first[c] bit 1 = c is a one-character key, bit 2 = c begins a longer key; second[c] = 1
 * when c is the second character of a key (see tfcli.data.line_encoder.precompiled_screen). */
static PyObject *py_charsmap_screen(PyObject *self, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*", &b)) return NULL;
    PyObject *first = PyBytes_FromStringAndSize(NULL, 0x110000);
    PyObject *second = PyBytes_FromStringAndSize(NULL, 0x110000);
    PyObject *result = NULL;
    if (!first || !second) goto done;
    unsigned char *f = (unsigned char *)PyBytes_AS_STRING(first);
    unsigned char *sc = (unsigned char *)PyBytes_AS_STRING(second);
    memset(f, 0, 0x110000);
    memset(sc, 0, 0x110000);
    uint32_t size = 0;
    if (b.len >= 4) memcpy(&size, b.buf, 4);
    if (size >= 4 && 4 + (Py_ssize_t)size <= b.len) {
        const uint32_t *units = (const uint32_t *)((const char *)b.buf + 4);
        unsigned char key[64];
        darts_walk(units, size / 4, darts_offset(units[0]), key, 0, NULL, f, sc);
    }
    result = Py_BuildValue("(OO)", first, second);
done:
    PyBuffer_Release(&b);
    Py_XDECREF(first); Py_XDECREF(second);
    return result;
}

static PyMethodDef methods[] = {
    {"charsmap_screen", py_charsmap_screen, METH_VARARGS, "Screening tables of a charsmap."},
    {"encode_rows", py_encode_rows, METH_VARARGS, "Ids of rows of text, via a word cache."},
    {"plain_keys", py_plain_keys, METH_VARARGS, "precompiled_apply's one-character keys."},
    {"precompiled_apply", py_precompiled_apply, METH_VARARGS,
     "A charsmap applied where that is exact here, and the rows left for HF."},
    {"charsmap_keys", py_charsmap_keys, METH_VARARGS, "The keys of a precompiled charsmap."},
    {"bpe", py_bpe, METH_VARARGS, "A BPE model from its tables (see tfcli.data.line_encoder)."},
    {"unigram", py_unigram, METH_VARARGS, "A Unigram model from its tables."},
    {"encode", py_encode, METH_VARARGS, "Ids of prefix + word for each word, and their counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_segment", NULL, -1, methods};

PyMODINIT_FUNC PyInit__segment(void) { return PyModule_Create(&module); }

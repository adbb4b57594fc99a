/* ytree: a YAML document as a small tree of scalars, sequences and mappings,
 * each node carrying its 1-based source position. Internal to src/config/. */
#ifndef HERALD_CONFIG_YTREE_H
#define HERALD_CONFIG_YTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/core.h"

enum ynode_type { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP };

struct ynode {
    enum ynode_type type;
    int line, col;   /* 1-based */
    bool plain;      /* unquoted scalar (only plain scalars can be null) */
    const char *str; /* scalar text, NUL-terminated; may contain NUL (see len) */
    size_t len;
    /* Children in document order; a mapping alternates key, value. */
    struct ynode *child, *last, *next;
    size_t n_children;
};

/* Nesting deeper than this is refused: no config needs it and it bounds the
 * builder's stack. */
#define YTREE_MAX_DEPTH 32

/* Parses one YAML document from buf into nodes allocated in arena. *root is
 * NULL for an empty stream. On failure writes "name:line:col: problem" into
 * err and returns -HERR_CONFIG (or -ENOMEM). Aliases are refused: they would
 * let a small file expand into a huge config. */
int ytree_parse(struct arena *arena, const char *name, const char *buf, size_t len,
                struct ynode **root, char *err, size_t errlen);

/* A plain scalar spelling null ("", "~", "null"): treated as "not set". */
bool ynode_is_null(const struct ynode *n);

#endif

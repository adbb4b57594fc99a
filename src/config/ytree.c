/* Builds a ytree from libyaml's event stream. The event API (rather than
 * yaml_parser_load) lets us refuse aliases at their own position and keep
 * every node's mark, with memory bounded by the input size. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "config/ytree.h"

bool ynode_is_null(const struct ynode *n)
{
    if (!n) return true;
    if (n->type != YNODE_SCALAR || !n->plain) return false;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

static void parse_error(const yaml_parser_t *p, const char *name, const char *buf, size_t len,
                        char *err, size_t errlen)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(err, errlen, "%s:%d:%d: %s", name, line, col, problem);
        return;
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->context)
        snprintf(err, errlen, "%s:%d:%d: %s (%s at line %d)", name, line, col, problem, p->context,
                 (int)p->context_mark.line + 1);
    else
        snprintf(err, errlen, "%s:%d:%d: %s", name, line, col, problem);
}

static struct ynode *node_new(struct arena *a, enum ynode_type type, const yaml_event_t *ev)
{
    struct ynode *n = arena_alloc(a, sizeof(*n));
    if (!n) return NULL;
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    n->str = "";
    return n;
}

static void attach(struct ynode *parent, struct ynode *n)
{
    if (parent->last)
        parent->last->next = n;
    else
        parent->child = n;
    parent->last = n;
    parent->n_children++;
}

int ytree_parse(struct arena *arena, const char *name, const char *buf, size_t len,
                struct ynode **root, char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct ynode *stack[YTREE_MAX_DEPTH];
    int depth = 0, n_docs = 0, rc = 0;
    bool done = false;

    *root = NULL;
    if (!yaml_parser_initialize(&p)) return -ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            if (p.error == YAML_MEMORY_ERROR) {
                rc = -ENOMEM;
            } else {
                parse_error(&p, name, buf, len, err, errlen);
                rc = -HERR_CONFIG;
            }
            break;
        }
        struct ynode *n = NULL;
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++n_docs > 1) {
                snprintf(err, errlen, "%s:%d:%d: only one YAML document is allowed", name, line,
                         col);
                rc = -HERR_CONFIG;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "%s:%d:%d: aliases (*%.40s) are not supported", name, line, col,
                     (const char *)ev.data.alias.anchor);
            rc = -HERR_CONFIG;
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(arena, YNODE_SCALAR, &ev);
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->len = ev.data.scalar.length;
            n->str = arena_strndup(arena, (const char *)ev.data.scalar.value, n->len);
            if (!n->str) rc = -ENOMEM;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == YTREE_MAX_DEPTH) {
                snprintf(err, errlen, "%s:%d:%d: nesting deeper than %d levels", name, line, col,
                         YTREE_MAX_DEPTH);
                rc = -HERR_CONFIG;
                break;
            }
            n = node_new(arena, ev.type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP, &ev);
            if (!n) rc = -ENOMEM;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) depth--;
            break;
        default:
            break;
        }
        if (rc == 0 && n) {
            if (depth > 0)
                attach(stack[depth - 1], n);
            else if (!*root)
                *root = n;
            if (n->type != YNODE_SCALAR) stack[depth++] = n;
        }
        yaml_event_delete(&ev);
        if (rc) break;
    }
    yaml_parser_delete(&p);
    if (rc) *root = NULL;
    return rc;
}

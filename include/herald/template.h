/* template: "{{ name }}" placeholders in tenant templates, rendered with a
 * job's var.* fields. Pure: no I/O, output bounded by the caller. */
#ifndef HERALD_TEMPLATE_H
#define HERALD_TEMPLATE_H

#include <stddef.h>

#include "herald/core.h"

#define TEMPLATE_NAME_MAX 64

/* How a value is inserted: as-is (text/plain), HTML-escaped (& < > " '),
 * or into a header (as-is, but CR, LF and NUL are refused). */
enum template_escape { TEMPLATE_ESC_NONE = 0, TEMPLATE_ESC_HTML, TEMPLATE_ESC_HEADER };

/* The value for a placeholder name (not NUL-terminated), or NULL when the
 * job has none. */
typedef const char *(*template_lookup_fn)(void *ctx, const char *name, size_t name_len,
                                          size_t *value_len);

struct template_error {
    size_t offset;                    /* syntax errors: byte offset in the template */
    const char *why;                  /* static text */
    char name[TEMPLATE_NAME_MAX + 1]; /* the placeholder at fault (missing, bad value) */
};

/* Render tpl into out (appended). With lookup NULL only the syntax is
 * checked and nothing is written. Returns 0, or:
 *   -HERR_MALFORMED  bad syntax (err->offset, err->why)
 *   -ENOENT          a placeholder has no value (err->name): never an empty hole
 *   -EILSEQ          a value cannot go where it is used (CR/LF in a header)
 *   -HERR_TOO_LONG   output would exceed max_out bytes
 *   -ENOMEM
 * Syntax: "{{" optional blanks, a name of [A-Za-z0-9_.-] (1..64), optional
 * blanks, "}}". "\{{" writes a literal "{{"; any other "{{" must open a
 * placeholder. */
int template_render(const char *tpl, size_t len, enum template_escape esc,
                    template_lookup_fn lookup, void *ctx, size_t max_out, struct hbuf *out,
                    struct template_error *err);

#endif

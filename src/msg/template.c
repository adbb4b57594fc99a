/* Template rendering. One left-to-right pass; a placeholder is found by its
 * opening "{{" and must close on the same line within a short distance, so
 * a typo in a template cannot swallow the rest of the message. */
#include <errno.h>
#include <string.h>

#include "herald/template.h"

#define PLACEHOLDER_SPAN_MAX (TEMPLATE_NAME_MAX + 64) /* name plus blanks */

static bool is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int syntax(struct template_error *err, size_t offset, const char *why)
{
    err->offset = offset;
    err->why = why;
    return -HERR_MALFORMED;
}

static void set_name(struct template_error *err, const char *name, size_t n)
{
    if (n > TEMPLATE_NAME_MAX) n = TEMPLATE_NAME_MAX;
    memcpy(err->name, name, n);
    err->name[n] = '\0';
}

static int append_value(struct hbuf *out, const char *v, size_t n, enum template_escape esc)
{
    if (esc != TEMPLATE_ESC_HTML) return hbuf_append(out, v, n);
    size_t start = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *rep;
        switch (v[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        if ((rc = hbuf_append(out, v + start, i - start)) == 0) rc = hbuf_append_str(out, rep);
        start = i + 1;
    }
    return rc ? rc : hbuf_append(out, v + start, n - start);
}

int template_render(const char *tpl, size_t len, enum template_escape esc,
                    template_lookup_fn lookup, void *ctx, size_t max_out, struct hbuf *out,
                    struct template_error *err)
{
    struct template_error scratch;
    if (!err) err = &scratch;
    err->offset = 0;
    err->why = NULL;
    err->name[0] = '\0';
    size_t base = out ? out->len : 0;
    size_t i = 0, lit = 0;
    int rc;
#define FLUSH(upto)                                                                                \
    do {                                                                                           \
        if (lookup && (upto) > lit && (rc = hbuf_append(out, tpl + lit, (upto) - lit))) return rc; \
    } while (0)
    while (i + 1 < len) {
        if (tpl[i] == '\\' && i + 2 < len && tpl[i + 1] == '{' && tpl[i + 2] == '{') {
            FLUSH(i);
            lit = i + 1; /* drop the backslash, keep "{{" as text */
            i += 3;
            continue;
        }
        if (tpl[i] != '{' || tpl[i + 1] != '{') {
            i++;
            continue;
        }
        size_t open = i, p = i + 2;
        while (p < len && is_blank(tpl[p]))
            p++;
        size_t name = p;
        while (p < len && is_name_char(tpl[p]) && p - name <= TEMPLATE_NAME_MAX)
            p++;
        size_t name_len = p - name;
        while (p < len && is_blank(tpl[p]) && p - open < PLACEHOLDER_SPAN_MAX)
            p++;
        if (name_len == 0) return syntax(err, open, "'{{' without a variable name");
        if (name_len > TEMPLATE_NAME_MAX)
            return syntax(err, open, "variable name longer than 64 characters");
        if (p + 1 >= len || tpl[p] != '}' || tpl[p + 1] != '}')
            return syntax(err, open, "'{{' not closed by '}}' after the variable name");
        FLUSH(open);
        lit = i = p + 2;
        if (!lookup) continue;
        size_t vlen = 0;
        const char *v = lookup(ctx, tpl + name, name_len, &vlen);
        set_name(err, tpl + name, name_len);
        if (!v) return -ENOENT;
        if (esc == TEMPLATE_ESC_HEADER)
            for (size_t k = 0; k < vlen; k++)
                if (v[k] == '\r' || v[k] == '\n' || v[k] == '\0') {
                    err->why = v[k] ? "contains CR or LF" : "contains NUL";
                    return -EILSEQ;
                }
        if ((rc = append_value(out, v, vlen, esc))) return rc;
        if (out->len - base > max_out) return -HERR_TOO_LONG;
        err->name[0] = '\0';
    }
    FLUSH(len);
#undef FLUSH
    if (lookup && out->len - base > max_out) return -HERR_TOO_LONG;
    return 0;
}

/* template_render on an arbitrary template, with variables a..z bound to
 * values full of HTML specials and line breaks: never crashes, the syntax
 * check and the render agree, HTML output holds no raw '<' from a value,
 * header output no CR/LF, and the output bound holds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char value[] = "<&\"'>";
static const char crlf_value[] = "x\r\ny";

static const char *lookup(void *ctx, const char *name, size_t len, size_t *vlen)
{
    (void)ctx;
    if (len == 1 && name[0] >= 'a' && name[0] <= 'z') {
        *vlen = name[0] == 'z' ? sizeof crlf_value - 1 : sizeof value - 1;
        return name[0] == 'z' ? crlf_value : value;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *tpl = (const char *)data;
    struct template_error err;
    int syntax = template_render(tpl, size, TEMPLATE_ESC_NONE, NULL, NULL, 0, NULL, &err);
    if (syntax != 0 && (syntax != -HERR_MALFORMED || !err.why || err.offset >= size)) abort();
    /* Without '<' in the template, escaped output must have none. */
    bool tpl_has_lt = memchr(data, '<', size) != NULL;
    for (int e = TEMPLATE_ESC_NONE; e <= TEMPLATE_ESC_HEADER; e++) {
        struct hbuf out;
        hbuf_init(&out);
        size_t max = 4 * size + 64;
        int rc = template_render(tpl, size, (enum template_escape)e, lookup, NULL, max, &out, &err);
        /* Render stops at the first problem, which may be a missing var
         * before the syntax error; it must never succeed, though. */
        if (syntax && rc == 0) abort();
        if (rc == 0) {
            if (syntax) abort();
            if (out.len > max) abort();
            if (e == TEMPLATE_ESC_HTML && !tpl_has_lt && out.len && memchr(out.data, '<', out.len))
                abort();
        } else if (rc == -ENOENT || rc == -EILSEQ) {
            if (!err.name[0]) abort();
            if (rc == -EILSEQ && e != TEMPLATE_ESC_HEADER) abort();
        } else if (rc != -HERR_TOO_LONG && rc != -HERR_MALFORMED) {
            abort();
        }
        hbuf_free(&out);
    }
    return 0;
}

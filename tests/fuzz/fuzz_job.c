/* A stream entry from arbitrary bytes: fields separated by 0x1e, name and
 * value by 0x1f (values keep every other byte, NUL included). The entry is
 * parsed against a fixed config (with a template "t"); when accepted it is
 * built (literal, template or raw), and the wire
 * must hold only CRLF line endings, lines <= 998 octets and exactly one
 * "CRLF . CRLF", at the very end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fixed_random(void *buf, size_t len)
{
    memset(buf, 0x5a, len);
    return 0;
}

static char *domains[] = {"acme.test", "example.test"};
static struct cfg_template templates[] = {
    {.name = "t", .subject = "S {{a}}", .text = "T {{ a }} {{b}}", .html = "<p>{{b}}</p>"},
};
static struct cfg_tenant tenants[] = {
    {.name = "acme",
     .from = "r@acme.test",
     .from_name = "Acme",
     .domains = {domains, 2},
     .templates = templates,
     .n_templates = 1},
    {.name = "b", .from = "n@b.test", .reply_to = "h@b.test"},
};

#define MAX_FIELDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.tenants = tenants;
    cfg.n_tenants = 2;
    cfg.engine.max_field_bytes = 8192;
    job_set_random(fixed_random);

    const char *names[MAX_FIELDS], *values[MAX_FIELDS];
    size_t name_lens[MAX_FIELDS], value_lens[MAX_FIELDS];
    size_t n = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end && n < MAX_FIELDS) {
        const char *rec_end = memchr(p, 0x1e, (size_t)(end - p));
        if (!rec_end) rec_end = end;
        const char *sep = memchr(p, 0x1f, (size_t)(rec_end - p));
        names[n] = p;
        name_lens[n] = (size_t)((sep ? sep : rec_end) - p);
        values[n] = sep ? sep + 1 : rec_end;
        value_lens[n] = sep ? (size_t)(rec_end - sep - 1) : 0;
        n++;
        p = rec_end + 1;
    }

    struct job j;
    struct job_error err;
    job_init(&j);
    int rc = job_parse(&j, "1795341600000-0", n, names, name_lens, values, value_lens, &cfg, &err);
    if (rc != 0 && (rc != -HERR_MALFORMED || !err.reason[0] || !j.id)) abort();
    if (rc == 0 && !j.cancel) {
        if (!j.tenant || !j.to || !j.from || !j.rcpt) abort();
        if (j.kind == JOB_KIND_RAW ? !j.raw : !j.subject || (!j.text && !j.html)) abort();
        const struct cfg_tenant *t = strcmp(j.tenant, "acme") == 0 ? &tenants[0] : &tenants[1];
        rc = job_build(&j, t, "mx.example.net", 1795341600000LL, 1 << 20, &err);
        if (rc == 0) {
            const char *w = j.wire.data;
            size_t len = j.wire.len, col = 0;
            if (len < 5 || memcmp(w + len - 5, "\r\n.\r\n", 5) != 0) abort();
            if (memmem(w, len, "\r\n.\r\n", 5) != w + len - 5 || memcmp(w, ".\r\n", 3) == 0)
                abort();
            for (size_t i = 0; i < len; i++) {
                if (w[i] == '\r') {
                    if (i + 1 >= len || w[i + 1] != '\n' || col > 998) abort();
                    col = 0;
                    i++;
                } else if (w[i] == '\n' || w[i] == '\0') {
                    abort();
                } else {
                    col++;
                }
            }
        } else if (rc != -HERR_TOO_LONG) {
            abort();
        }
    }
    job_clear(&j);
    return 0;
}

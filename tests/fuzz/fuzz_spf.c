/* Any bytes as an SPF record: the parser must refuse or parse, never read
 * out of bounds; every term it returns must lie inside the input, and a
 * parsed domain-spec must expand (against a fixed request) without error
 * other than "malformed". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "herald/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct spf_record rec;
    char err[160];
    const char *txt = (const char *)data;
    if (spf_record_parse(txt, size, &rec, err, sizeof err) != 0) return 0;
    if (rec.n > SPF_TERMS_MAX) abort();
    struct spf_request rq = {.family = AF_INET, .ip = {192, 0, 2, 1}, .domain = "example.test",
                             .sender = "a-b@example.test", .helo = "mta.test"};
    struct hbuf out;
    hbuf_init(&out);
    for (size_t i = 0; i < rec.n; i++) {
        const struct spf_term *t = &rec.terms[i];
        if (t->text < txt || t->text + t->text_len > txt + size) abort();
        if (!t->spec) continue;
        if (t->spec < txt || t->spec + t->spec_len > txt + size) abort();
        if (t->kind == SPF_T_UNKNOWN_MOD) continue;
        hbuf_reset(&out);
        int rc = spf_macro_expand(t->spec, t->spec_len, &rq, "example.test", t->kind == SPF_T_EXP,
                                  &out);
        if (rc != 0 && rc != -HERR_MALFORMED) abort();
        if (rc == 0 && t->kind != SPF_T_EXP && out.len > 253) abort();
    }
    hbuf_free(&out);
    return 0;
}

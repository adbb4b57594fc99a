/* fb_parse on arbitrary bytes: never crashes or reads past the input; the
 * answer is 0 or -HERR_MALFORMED; every string field is NUL-terminated in
 * its array and free of control bytes; addresses pass addr_check; status
 * codes have the x.y.z shape; VERP tokens are 37 lower-case base32
 * characters; the same input always gives the same report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/feedback.h"
#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELD(s) check_str((s), sizeof(s))

static void check_str(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    if (!nul) abort();
    for (const char *p = s; p < nul; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) abort();
}

static void check_addr(const char *s, size_t cap)
{
    check_str(s, cap);
    if (s[0] && addr_check(s, strlen(s), NULL, NULL) != 0) abort();
}

static void check_status(const char *s)
{
    size_t n = strlen(s);
    if (n == 0) return;
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') abort();
    unsigned dots = 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.' || ++dots > 1) abort();
        } else if (s[i] < '0' || s[i] > '9') {
            abort();
        }
    }
    if (dots != 1 || s[n - 1] == '.') abort();
}

static void check(const struct fb_report *r, int rc)
{
    if (rc != 0 && rc != -HERR_MALFORMED) abort();
    if (rc != 0 && (r->kind != FB_UNKNOWN || !(r->flags & FB_F_NO_HEADER))) abort();
    if ((unsigned)r->kind >= FB_KIND_COUNT) abort();
    if (r->n_rcpts > FB_RCPTS_MAX || r->n_verp > FB_VERP_KEEP) abort();
    FIELD(r->reporting_mta);
    FIELD(r->arrival_date);
    FIELD(r->autoreply_mark);
    FIELD(r->orig_message_id);
    FIELD(r->in_reply_to);
    if (strpbrk(r->orig_message_id, " <>") || strpbrk(r->in_reply_to, " <>")) abort();
    check_addr(r->orig_return_path, sizeof r->orig_return_path);
    check_addr(r->orig_to, sizeof r->orig_to);
    if (r->kind != FB_AUTOREPLY && r->autoreply_mark[0]) abort();
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const struct fb_rcpt *e = &r->rcpts[i];
        if ((unsigned)e->action >= FB_ACTION_COUNT) abort();
        FIELD(e->status);
        check_status(e->status);
        check_addr(e->final_recipient, sizeof e->final_recipient);
        check_addr(e->original_recipient, sizeof e->original_recipient);
        FIELD(e->diagnostic);
        FIELD(e->remote_mta);
        if (fb_is_hard(e) && (e->action != FB_ACTION_FAILED || e->status[0] != '5')) abort();
    }
    const struct fb_arf *a = &r->arf;
    if ((unsigned)a->feedback_type >= FB_FEEDBACK_COUNT) abort();
    FIELD(a->user_agent);
    FIELD(a->version);
    check_addr(a->original_mail_from, sizeof a->original_mail_from);
    check_addr(a->original_rcpt_to, sizeof a->original_rcpt_to);
    FIELD(a->arrival_date);
    FIELD(a->source_ip);
    FIELD(a->reported_domain);
    for (size_t i = 0; i < r->n_verp; i++) {
        if (strlen(r->verp[i]) != FB_VERP_TOKEN_LEN) abort();
        for (size_t k = 0; k < FB_VERP_TOKEN_LEN; k++) {
            char c = r->verp[i][k];
            if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *m = malloc(size ? size : 1);
    if (!m) return 0;
    memcpy(m, data, size);
    static struct fb_report r1, r2;
    int rc = fb_parse(m, size, NULL, &r1);
    check(&r1, rc);
    struct fb_envelope env = {.mail_from = "",
                              .rcpt_to = "b+aekjlp63ta3r3piaafitmcofrdkxhev2vsik6@x"};
    int rc2 = fb_parse(m, size, &env, &r2);
    check(&r2, rc2);
    if (rc != rc2) abort();
    if (rc == 0 && r2.n_verp == 0) abort(); /* the envelope token is always seen */
    int rc3 = fb_parse(m, size, NULL, &r2);
    if (rc3 != rc || memcmp(&r1, &r2, sizeof r1) != 0) abort();
    free(m);
    return 0;
}

/* The admission script's reply -> verdict (admit_parse): every form
 * scripts.c documents, and the malformed ones refused whole, with nothing
 * left half-filled in the verdict. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/core.h"
#include "engine/admit.h"

struct good {
    const char *reply;
    enum admit_kind kind;
    enum admit_limit limit;
    int64_t wait_ms;
    bool global;
    const char *by;
    const char *replaced;
};

static const struct good goods[] = {
    {"ok", ADMIT_OK, ADMIT_LIMIT_NONE, 0, false, "", ""},
    {"ok;replaced=cancelled", ADMIT_OK, ADMIT_LIMIT_NONE, 0, false, "", "cancelled"},
    {"ok;replaced=in-flight", ADMIT_OK, ADMIT_LIMIT_NONE, 0, false, "", "in-flight"},
    {"ok;replaced=already-delivered", ADMIT_OK, ADMIT_LIMIT_NONE, 0, false, "",
     "already-delivered"},
    {"ok;replaced=already-cancelled", ADMIT_OK, ADMIT_LIMIT_NONE, 0, false, "",
     "already-cancelled"},
    {"ok;replaced=not-seen", ADMIT_OK, ADMIT_LIMIT_NONE, 0, false, "", "not-seen"},
    {"wait:1234:recipient-cap", ADMIT_WAIT, ADMIT_LIMIT_RECIPIENT_CAP, 1234, false, "", ""},
    {"wait:5:tenant-rate", ADMIT_WAIT, ADMIT_LIMIT_TENANT_RATE, 5, false, "", ""},
    {"wait:0:tenant-rate", ADMIT_WAIT, ADMIT_LIMIT_TENANT_RATE, 0, false, "", ""},
    /* The longest wait taken: 15 digits. */
    {"wait:999999999999999:recipient-cap", ADMIT_WAIT, ADMIT_LIMIT_RECIPIENT_CAP, 999999999999999LL,
     false, "", ""},
    {"cancelled:1733140000000-0", ADMIT_CANCELLED, ADMIT_LIMIT_NONE, 0, false, "1733140000000-0",
     ""},
    {"duplicate:1733140000000-17", ADMIT_DUPLICATE, ADMIT_LIMIT_NONE, 0, false, "1733140000000-17",
     ""},
    /* The longest stream id there is: two 20-digit numbers. */
    {"duplicate:18446744073709551615-18446744073709551615", ADMIT_DUPLICATE, ADMIT_LIMIT_NONE, 0,
     false, "18446744073709551615-18446744073709551615", ""},
    {"suppressed:tenant", ADMIT_SUPPRESSED, ADMIT_LIMIT_NONE, 0, false, "", ""},
    {"suppressed:global", ADMIT_SUPPRESSED, ADMIT_LIMIT_NONE, 0, true, "", ""},
};

static const char *const bads[] = {
    "",
    "wait:",
    "wait::tenant-rate",
    "wait:x:recipient-cap",
    "wait:10:bogus",
    "wait:10:",
    "wait:10",
    "wait:-5:tenant-rate",
    "wait:+5:tenant-rate",
    "wait: 5:tenant-rate",
    "wait:5x:tenant-rate",
    "wait:1.5:tenant-rate",
    "wait:1e+14:tenant-rate",            /* how Lua would print a huge number */
    "wait:1000000000000000:tenant-rate", /* 16 digits: now + wait could overflow */
    "wait:99999999999999999999:recipient-cap",
    "wait:5:tenant-rate ",
    "duplicate:",
    "cancelled:",
    "duplicate",
    "cancelled",
    "suppressed:",
    "suppressed:other",
    "suppressed:tenants",
    "suppressed:globalx",
    "okay",
    "ok ",
    "OK",
    "ok;",
    "ok;other=x",
    "ok;replaced=",
    "ERR something",
    "NOSCRIPT No matching script",
};

static void check_good(const struct good *g)
{
    struct admit_verdict v;
    memset(&v, 0x5a, sizeof v); /* the parser must set every field */
    int rc = admit_parse(g->reply, &v);
    if (rc != 0) fprintf(stderr, "reply \"%s\" refused\n", g->reply);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(v.kind, g->kind);
    CHECK_EQ_INT(v.limit, g->limit);
    CHECK_EQ_INT(v.wait_ms, g->wait_ms);
    CHECK_EQ_INT(v.global, g->global);
    CHECK_EQ_STR(v.by, g->by);
    CHECK_EQ_STR(v.replaced, g->replaced);
    CHECK_EQ_INT(admit_claimed(&v), g->kind == ADMIT_OK || g->kind == ADMIT_WAIT);
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

static void check_bad(const char *reply)
{
    struct admit_verdict v;
    memset(&v, 0x5a, sizeof v);
    int rc = admit_parse(reply, &v);
    if (rc != -HERR_MALFORMED)
        fprintf(stderr, "reply \"%s\" not refused (rc %d kind %d)\n", reply ? reply : "(null)", rc,
                (int)v.kind);
    CHECK_EQ_INT(rc, -HERR_MALFORMED);
    CHECK_EQ_INT(v.kind, ADMIT_NONE);
    CHECK(all_zero(&v, sizeof v)); /* no half-parsed wait, id or limit */
    CHECK(!admit_claimed(&v));
}

/* An id one byte too long for the verdict is refused, not cut short into
 * the name of some other entry; one that just fits is kept whole. */
static void test_lengths(void)
{
    struct admit_verdict v;
    const char *prefixes[] = {"cancelled:", "duplicate:"};
    for (size_t p = 0; p < 2; p++) {
        char reply[128], id[sizeof v.by + 1];
        memset(id, '7', sizeof id - 1);
        id[sizeof id - 1] = '\0';
        id[sizeof v.by - 1] = '\0'; /* sizeof by - 1 characters: fits */
        snprintf(reply, sizeof reply, "%s%s", prefixes[p], id);
        CHECK_EQ_INT(admit_parse(reply, &v), 0);
        CHECK_EQ_STR(v.by, id);
        id[sizeof v.by - 1] = '7'; /* one more: does not */
        snprintf(reply, sizeof reply, "%s%s", prefixes[p], id);
        CHECK_EQ_INT(admit_parse(reply, &v), -HERR_MALFORMED);
        CHECK_EQ_INT(v.kind, ADMIT_NONE);
    }
    char reply[128], what[sizeof v.replaced + 1];
    memset(what, 'a', sizeof what - 1);
    what[sizeof what - 1] = '\0';
    what[sizeof v.replaced - 1] = '\0';
    snprintf(reply, sizeof reply, "ok;replaced=%s", what);
    CHECK_EQ_INT(admit_parse(reply, &v), 0);
    CHECK_EQ_STR(v.replaced, what);
    what[sizeof v.replaced - 1] = 'a';
    snprintf(reply, sizeof reply, "ok;replaced=%s", what);
    CHECK_EQ_INT(admit_parse(reply, &v), -HERR_MALFORMED);
}

/* A verdict is not carried over from the previous call. */
static void test_reuse(void)
{
    struct admit_verdict v;
    CHECK_EQ_INT(admit_parse("wait:77:tenant-rate", &v), 0);
    CHECK_EQ_INT(admit_parse("ok", &v), 0);
    CHECK_EQ_INT(v.kind, ADMIT_OK);
    CHECK_EQ_INT(v.wait_ms, 0);
    CHECK_EQ_INT(v.limit, ADMIT_LIMIT_NONE);
    CHECK_EQ_INT(admit_parse("suppressed:global", &v), 0);
    CHECK_EQ_INT(admit_parse("suppressed:tenant", &v), 0);
    CHECK_EQ_INT(v.global, false);
}

int main(void)
{
    for (size_t i = 0; i < HERALD_ARRAY_LEN(goods); i++)
        check_good(&goods[i]);
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bads); i++)
        check_bad(bads[i]);
    check_bad(NULL);
    test_lengths();
    test_reuse();
    return check_report("test_admit");
}

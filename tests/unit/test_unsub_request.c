/* The one-click unsubscribe request parser (src/feedback/unsub_req.c): a
 * table of requests with the status each must get, requests fed a byte at
 * a time (need more until the last byte), and the size bounds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/unsub.h"

#define TOK       "AbC-_09xyz"
#define POST_HEAD "POST /u/" TOK " HTTP/1.1\r\nHost: u.example\r\n"

static const struct {
    const char *req;
    int rc;     /* 0 or -EAGAIN */
    int status; /* when rc == 0 */
    enum unsub_method method;
} cases[] = {
    {"GET /u/" TOK " HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, UNSUB_GET},
    {"GET /u/" TOK "?utm=1 HTTP/1.0\r\n\r\n", 0, 0, UNSUB_GET},
    {"HEAD /u/" TOK " HTTP/1.1\n\n", 0, 0, UNSUB_HEAD},
    {POST_HEAD "Content-Length: 26\r\n\r\nList-Unsubscribe=One-Click", 0, 0, UNSUB_POST},
    {POST_HEAD "content-length:  28 \r\n\r\nList-Unsubscribe=One-Click\r\n", 0, 0, UNSUB_POST},
    {POST_HEAD "Content-Length: 27\r\n\r\nList-Unsubscribe=One-Click\n", 0, 0, UNSUB_POST},
    /* wrong bodies */
    {POST_HEAD "Content-Length: 0\r\n\r\n", 0, 400, UNSUB_POST},
    {POST_HEAD "Content-Length: 26\r\n\r\nList-Unsubscribe=One-Clicx", 0, 400, UNSUB_POST},
    {POST_HEAD "Content-Length: 27\r\n\r\nList-Unsubscribe=One-Click&", 0, 400, UNSUB_POST},
    {POST_HEAD "Content-Length: 29\r\n\r\nList-Unsubscribe=One-Click\n\n\n", 0, 400, UNSUB_POST},
    /* lengths */
    {POST_HEAD "\r\nList-Unsubscribe=One-Click", 0, 411, UNSUB_POST},
    {POST_HEAD "Content-Length: 1025\r\n\r\n", 0, 413, UNSUB_POST},
    {POST_HEAD "Content-Length: 99999999999999999999\r\n\r\n", 0, 413, UNSUB_POST},
    {POST_HEAD "Content-Length: 26\r\nContent-Length: 26\r\n\r\nList-Unsubscribe=One-Click", 0, 400,
     UNSUB_POST},
    {POST_HEAD "Content-Length: -1\r\n\r\n", 0, 400, UNSUB_POST},
    {POST_HEAD "Content-Length: 2 6\r\n\r\n", 0, 400, UNSUB_POST},
    {POST_HEAD "Transfer-Encoding: chunked\r\n\r\n1a\r\nList-Unsubscribe=One-Click\r\n0\r\n\r\n", 0,
     400, UNSUB_POST},
    /* need more */
    {POST_HEAD "Content-Length: 26\r\n\r\nList-Unsub", -EAGAIN, 0, UNSUB_GET},
    {"GET /u/" TOK " HTTP/1.1\r\nHost: x\r\n", -EAGAIN, 0, UNSUB_GET},
    {"", -EAGAIN, 0, UNSUB_GET},
    /* paths, methods, versions, header syntax */
    {"GET / HTTP/1.1\r\n\r\n", 0, 404, UNSUB_GET},
    {"GET /u/ HTTP/1.1\r\n\r\n", 0, 404, UNSUB_GET},
    {"GET /u/a.b HTTP/1.1\r\n\r\n", 0, 404, UNSUB_GET},
    {"GET /u/a%41 HTTP/1.1\r\n\r\n", 0, 404, UNSUB_GET},
    {"GET /x/" TOK " HTTP/1.1\r\n\r\n", 0, 404, UNSUB_GET},
    {"PUT /u/" TOK " HTTP/1.1\r\n\r\n", 0, 405, UNSUB_GET},
    {"get /u/" TOK " HTTP/1.1\r\n\r\n", 0, 405, UNSUB_GET},
    {"GET /u/" TOK " HTTP/2.0\r\n\r\n", 0, 505, UNSUB_GET},
    {"GET /u/" TOK " HTTP/1.2\r\n\r\n", 0, 505, UNSUB_GET},
    {"GET /u/" TOK "\r\n\r\n", 0, 400, UNSUB_GET},
    {"GET /u/" TOK " HTTP/1.1 x\r\n\r\n", 0, 400, UNSUB_GET},
    {"GET /u/" TOK " HTTP/1.1\r\nNoColon\r\n\r\n", 0, 400, UNSUB_GET},
    {"GET /u/" TOK " HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 0, 400, UNSUB_GET},
    {"GET /u/" TOK " HTTP/1.1\r\nBad Name: b\r\n\r\n", 0, 400, UNSUB_GET},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct unsub_request rq;
        int rc = unsub_request_parse(cases[i].req, strlen(cases[i].req), &rq);
        if (rc != cases[i].rc || (rc == 0 && rq.status != cases[i].status))
            fprintf(stderr, "case %zu: %s\n", i, cases[i].req);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc != 0) continue;
        CHECK_EQ_INT(rq.status, cases[i].status);
        if (rq.status == 0) {
            CHECK_EQ_INT(rq.method, cases[i].method);
            CHECK_EQ_INT(rq.token_len, strlen(TOK));
            CHECK(rq.token && memcmp(rq.token, TOK, strlen(TOK)) == 0);
            CHECK(rq.used <= strlen(cases[i].req));
        }
    }
}

/* Every good request, cut short at each byte, needs more; whole, parses. */
static void test_bytewise(void)
{
    const char *req = POST_HEAD "Content-Length: 28\r\n\r\nList-Unsubscribe=One-Click\r\n";
    size_t n = strlen(req);
    struct unsub_request rq;
    int early = 0;
    for (size_t k = 0; k < n; k++)
        if (unsub_request_parse(req, k, &rq) != -EAGAIN) early++;
    CHECK_EQ_INT(early, 0);
    CHECK_EQ_INT(unsub_request_parse(req, n, &rq), 0);
    CHECK_EQ_INT(rq.status, 0);
    CHECK_EQ_INT(rq.used, n);
    CHECK(!rq.http10);
}

static void test_bounds(void)
{
    static char big[UNSUB_HEAD_MAX + 64];
    struct unsub_request rq;
    /* A header that never ends: answered 431 at the bound, not awaited. */
    size_t n = (size_t)snprintf(big, sizeof big, "GET /u/" TOK " HTTP/1.1\r\nX: ");
    memset(big + n, 'a', sizeof big - n);
    CHECK_EQ_INT(unsub_request_parse(big, UNSUB_HEAD_MAX - 1, &rq), -EAGAIN);
    CHECK_EQ_INT(unsub_request_parse(big, UNSUB_HEAD_MAX, &rq), 0);
    CHECK_EQ_INT(rq.status, 431);
    CHECK_EQ_INT(unsub_request_parse(big, sizeof big, &rq), 0);
    CHECK_EQ_INT(rq.status, 431);
    /* A token longer than any token can be: 404 without a decode. */
    n = (size_t)snprintf(big, sizeof big, "GET /u/");
    memset(big + n, 'A', FB_UNSUB_TOKEN_MAX + 1);
    n += FB_UNSUB_TOKEN_MAX + 1;
    n += (size_t)snprintf(big + n, sizeof big - n, " HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(unsub_request_parse(big, n, &rq), 0);
    CHECK_EQ_INT(rq.status, 404);
}

int main(void)
{
    test_table();
    test_bytewise();
    test_bounds();
    return check_report("test_unsub_request");
}

/* The ring-driven Redis client against a real redis-server: pipelined
 * commands get their replies in order, binary-safe arguments round-trip, and
 * when the server goes away every pending callback runs exactly once with
 * NULL and the state callback reports the loss. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "herald/redis.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static pid_t start_redis(int port)
{
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        freopen("/dev/null", "w", stdout);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int up_calls, down_calls, last_err;
static void on_state(struct redis_client *c, bool up, int err, void *arg)
{
    (void)c;
    (void)arg;
    last_err = err;
    if (up)
        up_calls++;
    else
        down_calls++;
}

static int n_replies, n_null, order_ok = 1, last_seen = -1;
static char echoed[64];
static size_t echoed_len;

static void on_reply(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    int idx = (int)(intptr_t)arg;
    if (!r) {
        n_null++;
        return;
    }
    if (idx != last_seen + 1)
        order_ok = 0;
    last_seen = idx;
    n_replies++;
    if (idx == 0 && r->type == REDIS_REPLY_STRING && r->len < sizeof echoed) {
        memcpy(echoed, r->str, r->len);
        echoed_len = r->len;
    }
}

static void test_url_userinfo(void)
{
    struct redis_addr a;
    const char *why = "";
    CHECK_EQ_INT(redis_addr_parse("rediss://herald@127.0.0.1:6390/3", &a, &why), 0);
    CHECK_EQ_STR(a.user, "herald");
    CHECK_EQ_STR(a.password, "");
    CHECK(a.tls);
    CHECK_EQ_INT(a.port, 6390);
    CHECK_EQ_INT(a.db, 3);
    CHECK_EQ_INT(redis_addr_parse("redis://u:p@127.0.0.1", &a, &why), 0);
    CHECK_EQ_STR(a.user, "u");
    CHECK_EQ_STR(a.password, "p");
    CHECK(!a.tls);
    CHECK_EQ_INT(redis_addr_parse("redis://:only-pw@127.0.0.1", &a, &why), 0);
    CHECK_EQ_STR(a.user, "");
    CHECK_EQ_STR(a.password, "only-pw");
}

/* redis_format_append writes exactly hiredis's RESP, appended to what the
 * buffer already holds. */
static void test_format_append(void)
{
    const char bin[] = {'a', '\0', '\r', '\n', 'b'};
    char big[1234];
    memset(big, 'x', sizeof big);
    const char *argv[] = {"EVALSHA", "", bin, big, "10"};
    size_t lens[] = {7, 0, sizeof bin, sizeof big, 2};
    for (int argc = 0; argc <= 5; argc++) {
        struct hbuf b;
        hbuf_init(&b);
        CHECK_EQ_INT(hbuf_append(&b, "prefix", 6), 0);
        CHECK_EQ_INT(redis_format_append(&b, argc, argv, lens), 0);
        char *want = NULL;
        int n = redisFormatCommandArgv(&want, argc, argv, lens);
        CHECK(n > 0);
        CHECK_EQ_INT(b.len, (size_t)n + 6);
        CHECK(n > 0 && b.len == (size_t)n + 6 && memcmp(b.data + 6, want, (size_t)n) == 0);
        redisFreeCommand(want);
        hbuf_free(&b);
    }
    /* NULL lengths: C strings. */
    struct hbuf b;
    hbuf_init(&b);
    const char *cs[] = {"GET", "k"};
    CHECK_EQ_INT(redis_format_append(&b, 2, cs, NULL), 0);
    CHECK_EQ_STR(b.data, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    hbuf_free(&b);
}

int main(void)
{
    test_url_userinfo();
    test_format_append();
    struct ring ring;
    if (ring_init(&ring, 256) < 0)
        return 77;
    int port = free_port();
    pid_t pid = start_redis(port);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    struct redis_addr addr;
    const char *why;
    CHECK_EQ_INT(redis_addr_parse(url, &addr, &why), 0);

    struct redis_client c;
    redis_client_init(&c, &ring, &addr, "test", on_state, NULL);
    /* redis-server needs a moment to listen; retry connecting. */
    for (int attempt = 0; attempt < 50 && up_calls == 0; attempt++) {
        if (c.state == REDIS_C_IDLE)
            redis_client_connect(&c);
        for (int i = 0; i < 5 && up_calls == 0 && c.state != REDIS_C_IDLE; i++)
            ring_run_once(&ring, 20);
        if (up_calls == 0)
            usleep(50000);
    }
    CHECK_EQ_INT(up_calls, 1);
    down_calls = 0; /* refusals while the server was starting */

    const char bin[] = {'a', '\0', '\r', '\n', 'b'};
    const char *argv[] = {"ECHO", bin};
    size_t lens[] = {4, sizeof bin};
    redis_client_command_argv(&c, on_reply, (void *)(intptr_t)0, 2, argv, lens);
    for (int i = 1; i < 500; i++)
        redis_client_commandf(&c, on_reply, (void *)(intptr_t)i, "INCR k");
    for (int i = 0; i < 200 && n_replies < 500; i++)
        ring_run_once(&ring, 20);
    CHECK_EQ_INT(n_replies, 500);
    CHECK(order_ok);
    CHECK_EQ_INT(echoed_len, sizeof bin);
    CHECK(memcmp(echoed, bin, sizeof bin) == 0);

    /* A reply over max_reply costs the connection, not the memory: the
     * pending callback gets NULL and the state callback says why. */
    enum { BIG = 300 * 1024 };
    char *big = malloc(BIG);
    memset(big, 'x', BIG);
    const char *set_argv[] = {"SET", "big", big};
    size_t set_lens[] = {3, 3, BIG};
    int replies_before = n_replies;
    last_seen = 599;
    redis_client_command_argv(&c, on_reply, (void *)(intptr_t)600, 3, set_argv, set_lens);
    for (int i = 0; i < 200 && n_replies == replies_before; i++)
        ring_run_once(&ring, 20);
    CHECK_EQ_INT(n_replies, replies_before + 1);
    free(big);
    redis_client_set_max_reply(&c, 64 * 1024);
    redis_client_commandf(&c, on_reply, (void *)(intptr_t)601, "GET big");
    for (int i = 0; i < 200 && down_calls == 0; i++)
        ring_run_once(&ring, 20);
    CHECK_EQ_INT(down_calls, 1);
    CHECK_EQ_INT(n_null, 1);
    CHECK_EQ_INT(last_err, -HERR_TOO_LONG);
    CHECK(c.state == REDIS_C_IDLE);
    /* It reconnects and carries on; small replies still fit. */
    up_calls = 0;
    redis_client_connect(&c);
    for (int i = 0; i < 100 && up_calls == 0; i++)
        ring_run_once(&ring, 20);
    CHECK_EQ_INT(up_calls, 1);
    replies_before = n_replies;
    last_seen = 601;
    redis_client_commandf(&c, on_reply, (void *)(intptr_t)602, "STRLEN big");
    for (int i = 0; i < 200 && n_replies == replies_before; i++)
        ring_run_once(&ring, 20);
    CHECK_EQ_INT(n_replies, replies_before + 1);
    CHECK(order_ok);
    down_calls = 0;
    n_null = 0;
    last_seen = 999;

    /* Kill the server with commands outstanding: BLPOP never answers. */
    redis_client_commandf(&c, on_reply, (void *)(intptr_t)1000, "BLPOP nothing 0");
    redis_client_commandf(&c, on_reply, (void *)(intptr_t)1001, "PING");
    for (int i = 0; i < 5; i++)
        ring_run_once(&ring, 10);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 200 && down_calls == 0; i++)
        ring_run_once(&ring, 20);
    CHECK_EQ_INT(down_calls, 1);
    CHECK_EQ_INT(n_null, 2);
    CHECK(c.state == REDIS_C_IDLE);
    CHECK(redis_client_command_argv(&c, on_reply, NULL, 2, argv, lens) == -ENOTCONN);

    redis_client_free(&c);
    ring_exit(&ring);
    return check_report("test_redis_client");
}

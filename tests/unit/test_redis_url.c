/* redis:// URL userinfo: the host starts after the last '@', so a password
 * may hold '@' or '/'; config_url_masked hides exactly what the parser
 * takes as the password. No sockets (127.0.0.1 resolves locally). */
#include "check.h"
#include "herald/config.h"
#include "herald/redis.h"

static void test_parse_at_in_password(void)
{
    struct redis_addr a;
    const char *why = "";
    CHECK_EQ_INT(redis_addr_parse("redis://user:p@ss@127.0.0.1:6390/2", &a, &why), 0);
    CHECK_EQ_STR(a.user, "user");
    CHECK_EQ_STR(a.password, "p@ss");
    CHECK_EQ_STR(a.host, "127.0.0.1");
    CHECK_EQ_INT(a.port, 6390);
    CHECK_EQ_INT(a.db, 2);
    CHECK_EQ_INT(redis_addr_parse("rediss://:a/b@c@127.0.0.1/4", &a, &why), 0);
    CHECK_EQ_STR(a.user, "");
    CHECK_EQ_STR(a.password, "a/b@c");
    CHECK_EQ_STR(a.host, "127.0.0.1");
    CHECK_EQ_INT(a.port, 6379);
    CHECK_EQ_INT(a.db, 4);
    CHECK(a.tls);
    /* A ':' in the password: the user ends at the first one. */
    CHECK_EQ_INT(redis_addr_parse("redis://u:x:y@[::1]:7000", &a, &why), 0);
    CHECK_EQ_STR(a.user, "u");
    CHECK_EQ_STR(a.password, "x:y");
    CHECK_EQ_STR(a.host, "::1");
    CHECK_EQ_INT(a.port, 7000);
    CHECK_EQ_INT(redis_addr_parse("redis://herald@127.0.0.1", &a, &why), 0);
    CHECK_EQ_STR(a.user, "herald");
    CHECK_EQ_STR(a.password, "");
    CHECK_EQ_INT(redis_addr_parse("redis://u:p@@127.0.0.1", &a, &why), 0);
    CHECK_EQ_STR(a.password, "p@");
    CHECK(redis_addr_parse("redis://u:p@", &a, &why) < 0);
}

static void test_mask(void)
{
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
        {"redis://herald@127.0.0.1:6379/0", "redis://herald@127.0.0.1:6379/0"},
        {"redis://u:secret@h:1/0", "redis://u:***@h:1/0"},
        {"redis://user:p@ss@127.0.0.1:6379/0", "redis://user:***@127.0.0.1:6379/0"},
        {"rediss://:a/b@c@h", "rediss://:***@h"},
        {"redis://u:x:y@[::1]:7000", "redis://u:***@[::1]:7000"},
        {"redis://u:p@", "redis://u:***@"},
        {"not a url", "not a url"},
        {"", ""},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        char buf[128];
        CHECK_EQ_STR(config_url_masked(cases[i].url, buf, sizeof buf), cases[i].want);
    }
    char small[12];
    const char *m = config_url_masked("redis://u:secret@h:1/0", small, sizeof small);
    CHECK(strstr(m, "secret") == NULL && strstr(m, "sec") == NULL);
    CHECK_EQ_STR(config_url_masked(NULL, small, sizeof small), "");
}

int main(void)
{
    test_parse_at_in_password();
    test_mask();
    return check_report("test_redis_url");
}

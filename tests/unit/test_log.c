/* log_quote and log_value: a value from outside (job id, SMTP reply, Redis
 * error) can neither end a log line nor forge a key=value field. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "herald/core.h"

static void test_value(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"appt-1042", "appt-1042"},
        {"pat@clinic.test", "pat@clinic.test"},
        {"mx1.clinic.test[192.0.2.1]:25", "mx1.clinic.test[192.0.2.1]:25"},
        {"", "\"\""},
        {NULL, "\"\""},
        {"a b", "\"a b\""},
        {"x\" injected=1 y=\"", "\"x\\\" injected=1 y=\\\"\""},
        {"a=b", "\"a=b\""},
        {"line\nts=2026 level=error event=forged", "\"line\\x0ats=2026 level=error event=forged\""},
        {"cr\rlf", "\"cr\\x0dlf\""},
        {"esc\x1b[2J", "\"esc\\x1b[2J\""},
        {"back\\slash", "\"back\\\\slash\""},
        {"del\x7f", "\"del\\x7f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"550 5.1.1 <\"pat\"@x>: User unknown", "\"550 5.1.1 <\\\"pat\\\"@x>: User unknown\""},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        char buf[128];
        CHECK_EQ_STR(log_value(buf, sizeof buf, cases[i].in), cases[i].want);
    }
}

/* Truncated values stay balanced: the closing quote is always written. */
static void test_truncation(void)
{
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *v = LOG_VALUE(big);
    size_t n = strlen(v);
    CHECK(n < LOG_VALUE_MAX);
    CHECK(v[0] == '"' && v[n - 1] == '"');
    CHECK(n > 6 && memcmp(v + n - 4, "...\"", 4) == 0);
    memset(big, '"', sizeof big - 1);
    v = LOG_VALUE(big);
    n = strlen(v);
    CHECK(v[0] == '"' && v[n - 1] == '"' && v[n - 2] == '.');
    /* An escape is never cut in half: no lone backslash before the dots. */
    CHECK(v[n - 5] == '"' && v[n - 6] == '\\');
    char small[8];
    CHECK_EQ_STR(log_value(small, sizeof small, "a b c d e f"), "\"a ...\"");
}

/* Two LOG_VALUEs in one call each keep their own buffer, and the line
 * log_event writes is one line with balanced quotes. */
static void test_one_line(void)
{
    char a[LOG_VALUE_MAX * 2 + 64];
    snprintf(a, sizeof a, "job=%s reply=%s", LOG_VALUE("j\"1\n"), LOG_VALUE("250 ok\r\n"));
    CHECK_EQ_STR(a, "job=\"j\\\"1\\x0a\" reply=\"250 ok\\x0d\\x0a\"");
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    int saved = dup(2);
    fflush(stderr);
    dup2(fileno(f), 2);
    log_event(LOG_WARN, "event=test job=%s reason=%s", LOG_VALUE("x\" y=\"z\nnext"),
              LOG_VALUE("ERR \"quoted\"\r\nforged line"));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char line[1024] = "";
    rewind(f);
    size_t got = fread(line, 1, sizeof line - 1, f);
    line[got] = '\0';
    fclose(f);
    CHECK(got > 0 && strchr(line, '\n') == line + got - 1);
    CHECK(strchr(line, '\r') == NULL);
    int quotes = 0;
    for (size_t i = 0; i < got; i++)
        if (line[i] == '"' && (i == 0 || line[i - 1] != '\\')) quotes++;
    CHECK_EQ_INT(quotes, 4);
    CHECK(strstr(line,
                 " job=\"x\\\" y=\\\"z\\x0anext\" reason=\"ERR \\\"quoted\\\"\\x0d\\x0aforged "
                 "line\"\n") != NULL);
}

int main(void)
{
    test_value();
    test_truncation();
    test_one_line();
    return check_report("test_log");
}

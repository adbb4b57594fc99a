/* cli_term_safe: what `herald events` prints of a note's fields. Control
 * bytes and invalid UTF-8 become \xHH, backslashes double, UTF-8 text stays,
 * truncation never splits an escape or a character. */
#include <string.h>

#include "check.h"
#include "cli/cli.h"

static const char *safe(const char *s, size_t n, char *buf, size_t len)
{
    return cli_term_safe(buf, len, s, n);
}

static void test_escapes(void)
{
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"250 ok", 6, "250 ok"},
        {"\x1b[2J", 4, "\\x1b[2J"},
        {"a\r\nb", 4, "a\\x0d\\x0ab"},
        {"\x07\x7f", 2, "\\x07\\x7f"},
        {"nul\0x", 5, "nul\\x00x"},
        {"C:\\x1b", 6, "C:\\\\x1b"}, /* a literal backslash stays distinct */
        {"\xc2\x9b"
         "31m",
         5, "\\xc2\\x9b31m"}, /* CSI as UTF-8 */
        {"\x9b"
         "31m",
         4, "\\x9b31m"}, /* CSI raw (Latin-1 terminals) */
        {"caf\xc3\xa9 \xe2\x9c\x93", 9, "caf\xc3\xa9 \xe2\x9c\x93"},
        {"\xc3", 1, "\\xc3"}, /* cut UTF-8 */
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        CHECK_EQ_STR(safe(cases[i].in, cases[i].n, buf, sizeof buf), cases[i].want);
    }
}

static void test_truncation(void)
{
    char buf[8];
    CHECK_EQ_STR(safe("abcdefg", 7, buf, sizeof buf), "abcdefg"); /* fits exactly */
    CHECK_EQ_STR(safe("abcdefgh", 8, buf, sizeof buf), "abcd...");
    CHECK_EQ_STR(safe("a\x1b"
                      "bcdef",
                      7, buf, sizeof buf),
                 "a...");
    CHECK_EQ_STR(safe("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, buf, sizeof buf),
                 "\xc3\xa9\xc3\xa9...");
    char tiny[3] = "zz";
    CHECK_EQ_STR(safe("abc", 3, tiny, sizeof tiny), "");
}

int main(void)
{
    test_escapes();
    test_truncation();
    return check_report("test_term_safe");
}

/* Encoders: dot-stuffing table (every line-ending kind, dots at line
 * starts), quoted-printable output and round trip through a small decoder,
 * RFC 2047 header text (word length, folding, UTF-8 boundaries). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "herald/job.h"

struct stuff_case {
    const char *in;
    const char *out;
};

static const struct stuff_case stuff_cases[] = {
    {"", ""},
    {"abc", "abc"},
    {"a\r\nb", "a\r\nb"},
    {"a\nb", "a\r\nb"},
    {"a\rb", "a\r\nb"},
    {"\n.\n", "\r\n..\r\n"},
    {"\r.\r", "\r\n..\r\n"},
    {"\r\n.\n", "\r\n..\r\n"},
    {".\r\n", "..\r\n"},
    {".", ".."},
    {"..\r\n", "...\r\n"},
    {"a\r\n..b\r\n", "a\r\n...b\r\n"},
    {"a.b\r\n", "a.b\r\n"},
    {"x\r\r\n.\n\r.", "x\r\n\r\n..\r\n\r\n.."},
    {"\n\r", "\r\n\r\n"},
    {"\r\n\r\n.\r\n", "\r\n\r\n..\r\n"},
    {"a\n\n.\r\r\n.x", "a\r\n\r\n..\r\n\r\n..x"},
};

static void test_dotstuff(void)
{
    for (size_t i = 0; i < HERALD_ARRAY_LEN(stuff_cases); i++) {
        struct hbuf b;
        hbuf_init(&b);
        CHECK_EQ_INT(msg_append_dotstuffed(&b, stuff_cases[i].in, strlen(stuff_cases[i].in)), 0);
        CHECK_EQ_STR(b.data ? b.data : "", stuff_cases[i].out);
        hbuf_free(&b);
    }
    /* Line-start state carries across calls through the buffer. */
    struct hbuf b;
    hbuf_init(&b);
    msg_append_dotstuffed(&b, "a\n", 2);
    msg_append_dotstuffed(&b, ".b", 2);
    msg_append_dotstuffed(&b, ".c", 2);
    CHECK_EQ_STR(b.data, "a\r\n..b.c");
    hbuf_free(&b);
}

/* Decode QP (RFC 2045) for the round-trip checks: soft breaks vanish, hard
 * breaks become "\n". */
static char *qp_decode(const char *s, size_t len, size_t *out_len)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=' && i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2;
        } else if (s[i] == '=' && i + 2 < len) {
            char hx[3] = {s[i + 1], s[i + 2], 0};
            out[o++] = (char)strtol(hx, NULL, 16);
            i += 2;
        } else if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
            out[o++] = '\n';
            i++;
        } else {
            out[o++] = s[i];
        }
    }
    *out_len = o;
    return out;
}

static void check_lines(const char *s, size_t len, size_t max)
{
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') {
            CHECK(i + 1 < len && s[i + 1] == '\n');
            if (col > max) fprintf(stderr, "line of %zu > %zu\n", col, max);
            CHECK(col <= max);
            col = 0;
            i++;
            continue;
        }
        CHECK(s[i] != '\n');
        col++;
    }
    CHECK(col <= max);
}

static void qp_roundtrip(const char *in, size_t len, const char *expect_norm)
{
    struct hbuf b;
    hbuf_init(&b);
    CHECK_EQ_INT(msg_append_qp(&b, in, len), 0);
    check_lines(b.data ? b.data : "", b.len, 76);
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        CHECK(c == '\r' || c == '\n' || c == '\t' || (c >= 32 && c < 127));
        /* no whitespace right before a line break */
        if (c == '\r' && i > 0) CHECK(b.data[i - 1] != ' ' && b.data[i - 1] != '\t');
    }
    size_t dl;
    char *dec = qp_decode(b.data ? b.data : "", b.len, &dl);
    CHECK_EQ_INT(dl, strlen(expect_norm));
    CHECK(dl == strlen(expect_norm) && memcmp(dec, expect_norm, dl) == 0);
    free(dec);
    hbuf_free(&b);
}

static void test_qp(void)
{
    struct hbuf b;
    hbuf_init(&b);
    msg_append_qp(&b, "a=b \xc3\xa9 end \nx\t\r\n", 16);
    CHECK_EQ_STR(b.data, "a=3Db =C3=A9 end=20\r\nx=09\r\n");
    hbuf_free(&b);

    hbuf_reset(&b);
    msg_append_qp(&b, "From me\nFrom", 12);
    CHECK_EQ_STR(b.data, "=46rom me\r\nFrom");
    hbuf_free(&b);
    qp_roundtrip("hello", 5, "hello");
    qp_roundtrip("line1\r\nline2\nline3\rline4", 24, "line1\nline2\nline3\nline4");
    qp_roundtrip("trailing   \nspace\t", 18, "trailing   \nspace\t");
    char long_line[3000];
    for (size_t i = 0; i < sizeof long_line; i++)
        long_line[i] = "ab= \xc3\xa9."[i % 7];
    long_line[sizeof long_line - 1] = 'z';
    char *norm = malloc(sizeof long_line + 1);
    memcpy(norm, long_line, sizeof long_line);
    norm[sizeof long_line] = '\0';
    qp_roundtrip(long_line, sizeof long_line, norm);
    free(norm);
    /* exactly 76 and 77 columns */
    char l76[80];
    memset(l76, 'x', sizeof l76);
    l76[76] = '\0';
    qp_roundtrip(l76, 76, l76);
    struct hbuf c;
    hbuf_init(&c);
    msg_append_qp(&c, l76, 76);
    CHECK_EQ_INT(c.len, 76); /* fits without a soft break */
    hbuf_free(&c);
    l76[76] = 'y';
    l76[77] = '\0';
    qp_roundtrip(l76, 77, l76);
}

static size_t max_word_len(const char *s)
{
    size_t best = 0;
    const char *p = s;
    while ((p = strstr(p, "=?")) != NULL) {
        const char *e = strstr(p + 2, "?=");
        /* skip the "?Q?" / "?B?" markers */
        const char *q = strchr(p + 2, '?');
        if (q) q = strchr(q + 1, '?');
        if (q) e = strstr(q + 1, "?=");
        if (!e) break;
        size_t n = (size_t)(e + 2 - p);
        if (n > best) best = n;
        p = e + 2;
    }
    return best;
}

static void test_header_text(void)
{
    struct hbuf b;
    hbuf_init(&b);
    msg_append_header_text(&b, "Your appointment", 16, 9);
    CHECK_EQ_STR(b.data, "Your appointment");

    hbuf_reset(&b);
    msg_append_header_text(&b, "Caf\xc3\xa9", 5, 9);
    CHECK_EQ_STR(b.data, "=?utf-8?Q?Caf=C3=A9?=");

    /* mostly non-ASCII -> base64 */
    hbuf_reset(&b);
    msg_append_header_text(&b, "\xe4\xbd\xa0\xe5\xa5\xbd", 6, 9);
    CHECK_EQ_STR(b.data, "=?utf-8?B?5L2g5aW9?=");

    /* "=?" in plain text must not be left to look like an encoded word */
    hbuf_reset(&b);
    msg_append_header_text(&b, "a =?x?Q?y?= b", 13, 9);
    CHECK(strncmp(b.data, "=?utf-8?", 8) == 0);

    /* long ASCII folds before whitespace; unfolding restores it */
    const char *longs = "Reminder: your appointment with Dr. Example at the Main Street clinic "
                        "is tomorrow at 10:00, please arrive ten minutes early to fill the forms";
    hbuf_reset(&b);
    msg_append_header_text(&b, longs, strlen(longs), 9);
    struct hbuf line;
    hbuf_init(&line);
    hbuf_append_str(&line, "Subject: ");
    hbuf_append(&line, b.data, b.len);
    check_lines(line.data, line.len, 78);
    hbuf_free(&line);
    CHECK(strstr(b.data, "\r\n ") != NULL);
    char *unf = malloc(b.len + 1);
    size_t u = 0;
    for (size_t i = 0; i < b.len; i++) {
        if (b.data[i] == '\r' && b.data[i + 1] == '\n') {
            i++;
            continue;
        }
        unf[u++] = b.data[i];
    }
    unf[u] = '\0';
    CHECK_EQ_STR(unf, longs);
    free(unf);

    /* long non-ASCII: every word <= 75, lines <= 78, no split sequence */
    char nonascii[600];
    size_t n = 0;
    while (n + 3 < sizeof nonascii) {
        memcpy(nonascii + n, "\xe2\x82\xac", 3); /* euro sign */
        n += 3;
    }
    hbuf_reset(&b);
    msg_append_header_text(&b, nonascii, n, 9);
    CHECK(max_word_len(b.data) <= 75);
    CHECK(max_word_len(b.data) > 40);
    check_lines(b.data, b.len, 78);
    /* B words of a 3-byte char repeated must hold whole chars: 45 bytes max */
    CHECK(strstr(b.data, "=?utf-8?B?") != NULL);

    /* mixed, mostly ASCII with a few accents: Q, words on char boundaries */
    char mixed[400];
    n = 0;
    while (n + 4 < sizeof mixed) {
        memcpy(mixed + n, "ab\xc3\xa9", 4);
        n += 4;
    }
    hbuf_reset(&b);
    msg_append_header_text(&b, mixed, n, 9);
    CHECK(max_word_len(b.data) <= 75);
    check_lines(b.data, b.len, 78);
    /* Q words never end between =C3 and =A9 */
    CHECK(strstr(b.data, "=C3?=") == NULL);

    /* a 2000-byte word without spaces is encoded (could not fold) */
    char word[2000];
    memset(word, 'w', sizeof word);
    hbuf_reset(&b);
    msg_append_header_text(&b, word, sizeof word, 9);
    check_lines(b.data, b.len, 78);
    hbuf_free(&b);
}

int main(void)
{
    test_dotstuff();
    test_qp();
    test_header_text();
    return check_report("test_encode");
}

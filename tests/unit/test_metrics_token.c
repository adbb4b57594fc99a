/* metrics.token_file read at start (engine/metrics.c metrics_token_load):
 * the first line is the token; a file that is missing, empty, too long to
 * hold whole, or has bytes a bearer token cannot is refused with the file
 * named, leaving no token behind; no file or no endpoint asks for none. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/metrics.h"

static char dir[] = "/tmp/herald-test-token-XXXXXX";

static char *file_with(const char *name, const char *text)
{
    static char path[4][256];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    chmod(p, 0600); /* a secret file: group- or world-readable ones are refused */
    return p;
}

static int load(char *path, const char *listen, char *tok, char *err)
{
    struct cfg_metrics mc = {.listen = (char *)listen, .token_file = path};
    err[0] = '\0';
    memset(tok, 'x', METRICS_TOKEN_MAX);
    return metrics_token_load(&mc, tok, err, 256);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char tok[METRICS_TOKEN_MAX], err[256];
    CHECK_EQ_INT(load(file_with("good", "Zm9v.bar-baz_0~+/=\r\nsecond line\n"), "127.0.0.1:1", tok,
                      err), 0);
    CHECK_EQ_STR(tok, "Zm9v.bar-baz_0~+/=");
    CHECK_EQ_STR(err, "");

    CHECK_EQ_INT(load(NULL, "127.0.0.1:1", tok, err), 0);
    CHECK_EQ_STR(tok, "");
    CHECK_EQ_INT(load(file_with("ignored", "t"), NULL, tok, err), 0); /* no endpoint */
    CHECK_EQ_STR(tok, "");

    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    CHECK_EQ_INT(load(missing, "127.0.0.1:1", tok, err), -ENOENT);
    CHECK(strstr(err, "metrics.token_file") && strstr(err, missing));
    CHECK_EQ_STR(tok, "");

    CHECK_EQ_INT(load(file_with("empty", "\n"), "127.0.0.1:1", tok, err), -HERR_CONFIG);
    CHECK(strstr(err, "empty") != NULL);
    CHECK_EQ_INT(load(file_with("space", "two words\n"), "127.0.0.1:1", tok, err), -HERR_CONFIG);
    CHECK(strstr(err, "space") != NULL);
    CHECK_EQ_STR(tok, "");
    CHECK_EQ_INT(load(file_with("tab", "tok\t\n"), "127.0.0.1:1", tok, err), -HERR_CONFIG);

    char long_tok[METRICS_TOKEN_MAX + 100];
    memset(long_tok, 'a', sizeof long_tok - 1);
    long_tok[sizeof long_tok - 1] = '\0';
    CHECK_EQ_INT(load(file_with("long", long_tok), "127.0.0.1:1", tok, err), -HERR_CONFIG);
    CHECK(strstr(err, "too long") != NULL);
    CHECK_EQ_STR(tok, "");
    long_tok[METRICS_TOKEN_MAX - 2] = '\0'; /* the longest that fits */
    CHECK_EQ_INT(load(file_with("longest", long_tok), "127.0.0.1:1", tok, err), 0);
    CHECK_EQ_INT(strlen(tok), METRICS_TOKEN_MAX - 2);

    const char *names[] = {"good", "ignored", "empty", "space", "tab", "long", "longest"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[300];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return check_report("test_metrics_token");
}

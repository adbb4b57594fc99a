/* The deployment secret behind the signed tokens (feedback.h): a file of
 * at least FB_SECRET_LEN bytes, refused when group or others may read it
 * (secret_file_open, the rule for every secret herald reads), hashed to
 * the 32 bytes the subkeys are derived from, so any printable secret of
 * enough length will do (e.g. `openssl rand -hex 32 > FILE`). */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "herald/core.h"
#include "herald/feedback.h"

#define SECRET_FILE_MAX 4096

int fb_secret_load(const char *path, struct fb_keys *out, char *why, size_t whylen)
{
    uint8_t buf[SECRET_FILE_MAX];
    int fd = secret_file_open(path, "secret file", why, whylen);
    if (fd < 0)
        return fd;
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r' || buf[got - 1] == ' '))
        got--;
    if (got < FB_SECRET_LEN) {
        snprintf(why, whylen, "secret file %s holds %zu bytes, fewer than %d", path, got,
                 FB_SECRET_LEN);
        explicit_bzero(buf, sizeof buf);
        return -HERR_CONFIG;
    }
    uint8_t secret[SHA256_DIGEST_LENGTH];
    SHA256(buf, got, secret);
    explicit_bzero(buf, sizeof buf);
    int rc = fb_keys_derive(secret, out);
    explicit_bzero(secret, sizeof secret);
    if (rc < 0)
        snprintf(why, whylen, "deriving keys from %s failed", path);
    return rc;
}

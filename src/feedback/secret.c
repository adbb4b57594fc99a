/* The deployment secrets behind the signed tokens (feedback.h): a file of
 * at least FB_SECRET_LEN bytes (one trailing newline, and a CR before it,
 * are not part of it), at most FB_SECRET_FILE_MAX, refused when group or
 * others may read it (secret_file_open, the rule for every secret herald
 * reads), hashed to the 32 bytes the subkeys are derived from, so any
 * printable secret of enough length will do (`openssl rand -hex 32`). */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "herald/core.h"
#include "herald/feedback.h"

int fb_secret_digest(const char *path, const char *what, uint8_t out[FB_SECRET_LEN], char *why,
                     size_t whylen)
{
    int fd = secret_file_open(path, what, why, whylen);
    if (fd < 0)
        return fd;
    uint8_t buf[FB_SECRET_FILE_MAX + 1];
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
    if (got > 0 && buf[got - 1] == '\n')
        got--;
    if (got > 0 && buf[got - 1] == '\r')
        got--;
    int rc = 0;
    if (got > FB_SECRET_FILE_MAX) {
        snprintf(why, whylen, "%s %s: larger than %d bytes", what, path, FB_SECRET_FILE_MAX);
        rc = -HERR_CONFIG;
    } else if (got < FB_SECRET_LEN) {
        snprintf(why, whylen,
                 "%s %s: holds %zu bytes, at least %d are needed (e.g. openssl rand -hex 32 > "
                 "FILE)",
                 what, path, got, FB_SECRET_LEN);
        rc = -HERR_CONFIG;
    } else {
        SHA256(buf, got, out);
    }
    explicit_bzero(buf, sizeof buf);
    return rc;
}

int fb_secret_load(const char *path, struct fb_keys *out, char *why, size_t whylen)
{
    uint8_t secret[FB_SECRET_LEN];
    int rc = fb_secret_digest(path, "secret file", secret, why, whylen);
    if (rc == 0 && fb_keys_derive(secret, out) < 0) {
        snprintf(why, whylen, "deriving keys from %s failed", path);
        rc = -EIO;
    }
    explicit_bzero(secret, sizeof secret);
    return rc;
}

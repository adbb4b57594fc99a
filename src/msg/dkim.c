/* DKIM signing (RFC 6376, RFC 8463 for Ed25519), relaxed/relaxed.
 *
 * The message is signed as the receiver will see it: after the dot-stuffer
 * has turned every line break into CRLF and before it adds dots (the
 * receiver removes them again). Keys are EVP_PKEYs loaded once and only
 * read afterwards, which OpenSSL 3 allows from many threads; the mutable
 * OpenSSL state (digest and signing contexts) and the scratch buffer for
 * the canonical header data belong to the calling thread and are reused
 * from one message to the next. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "herald/dkim.h"

#define KEY_FILE_MAX      (64 * 1024)
#define RSA_MIN_BITS      1024
#define SIG_MAX_BYTES     1024 /* RSA up to 8192 bits */
#define FOLD_COLS         78
#define MAX_HEADER_FIELDS 128

/* From, To, Subject, Date and Message-ID are what a reader sees; the MIME
 * headers decide how the signed body is shown; the List-Unsubscribe pair
 * is what mailbox providers act on for one-click unsubscribe, so an
 * intermediary must not be able to swap the URL. */
const char *const dkim_signed_headers[] = {
    "from",          "to",           "subject",          "date",
    "message-id",    "mime-version", "content-type",     "content-transfer-encoding",
    "reply-to",      "list-unsubscribe", "list-unsubscribe-post",
};
const size_t dkim_n_signed_headers = HERALD_ARRAY_LEN(dkim_signed_headers);

struct dkim_key {
    EVP_PKEY *pkey;
    enum dkim_alg alg;
};

static const char *const alg_names[DKIM_ALG_COUNT] = {"rsa-sha256", "ed25519-sha256"};

int dkim_alg_parse(const char *name, enum dkim_alg *out)
{
    for (int a = 0; a < DKIM_ALG_COUNT; a++)
        if (name && strcmp(name, alg_names[a]) == 0) {
            *out = (enum dkim_alg)a;
            return 0;
        }
    return -HERR_MALFORMED;
}

const char *dkim_alg_name(enum dkim_alg alg)
{
    return (unsigned)alg < DKIM_ALG_COUNT ? alg_names[alg] : "?";
}

/* ---- per-thread state ---- */

/* RSA signing contexts set up once per thread and key: initialising one
 * per message (a provider fetch, a new EVP_PKEY_CTX, padding and digest
 * parameters) costs about a tenth of the RSA operation itself. */
#define RSA_CTX_CACHE 8

struct tstate {
    EVP_MD_CTX *hash; /* body hash; header hash for Ed25519 */
    EVP_MD_CTX *sign;
    struct hbuf hd;   /* canonical header data of the signature being made */
    struct {
        const struct dkim_key *key;
        EVP_PKEY *orig; /* a reference to key->pkey: its address stays ours */
        EVP_PKEY_CTX *ctx; /* on this thread's own copy of the key */
    } rsa[RSA_CTX_CACHE];
    unsigned rsa_next; /* round-robin replacement when all are taken */
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t tkey;
static bool tkey_ok;
static EVP_MD *sha256; /* fetched once: an implicit fetch per message costs a lock */
static _Thread_local struct tstate *tls;

static void tstate_free(void *p)
{
    struct tstate *t = p;
    if (!t) return;
    EVP_MD_CTX_free(t->hash);
    EVP_MD_CTX_free(t->sign);
    for (unsigned i = 0; i < RSA_CTX_CACHE; i++) {
        EVP_PKEY_CTX_free(t->rsa[i].ctx);
        EVP_PKEY_free(t->rsa[i].orig);
    }
    hbuf_free(&t->hd);
    free(t);
}

static void init_once(void)
{
    /* The destructor frees a worker's contexts when its thread ends; the
     * main thread's stay reachable through `tls` until exit. */
    tkey_ok = pthread_key_create(&tkey, tstate_free) == 0;
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static struct tstate *tstate_get(void)
{
    pthread_once(&once, init_once);
    if (tls) return tls;
    if (!tkey_ok || !sha256) return NULL;
    struct tstate *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    hbuf_init(&t->hd);
    t->hash = EVP_MD_CTX_new();
    t->sign = EVP_MD_CTX_new();
    if (!t->hash || !t->sign || pthread_setspecific(tkey, t) != 0) {
        tstate_free(t);
        return NULL;
    }
    tls = t;
    return t;
}

/* ---- keys ---- */

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* never prompt on a terminal: an encrypted key is refused */
}

static int read_key_file(const char *path, char **out, size_t *out_len, char *why,
                         size_t whylen)
{
    int fd = secret_file_open(path, "DKIM key", why, whylen);
    if (fd < 0) return fd;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot stat DKIM key %s: %s", path, strerror(-rc));
    } else if (st.st_size > KEY_FILE_MAX) {
        rc = -HERR_CONFIG;
        snprintf(why, whylen, "DKIM key %s is larger than %d bytes", path, KEY_FILE_MAX);
    }
    if (rc) {
        close(fd);
        return rc;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    if (!buf) {
        close(fd);
        snprintf(why, whylen, "out of memory reading DKIM key %s", path);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = -errno;
            snprintf(why, whylen, "cannot read DKIM key %s: %s", path, strerror(-rc));
            break;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (rc) {
        OPENSSL_cleanse(buf, got);
        free(buf);
        return rc;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return 0;
}

static int sign_raw(struct tstate *t, const struct dkim_key *k, const void *data, size_t len,
                    unsigned char *sig, size_t *sig_len);

static const char *key_type_article(int type)
{
    return type == EVP_PKEY_RSA       ? "n RSA"
           : type == EVP_PKEY_ED25519 ? "n Ed25519"
           : type == EVP_PKEY_EC      ? "n EC"
                                      : " non-RSA/Ed25519";
}

/* any: the key's type picks the algorithm; else it must be the one alg
 * needs. */
static int key_load(const char *path, bool any, enum dkim_alg alg, struct dkim_key **out, char *why,
                    size_t whylen)
{
    *out = NULL;
    if (whylen) why[0] = '\0';
    if (!any && (unsigned)alg >= DKIM_ALG_COUNT) return -EINVAL;
    char *pem = NULL;
    size_t pem_len = 0;
    int rc = read_key_file(path, &pem, &pem_len, why, whylen);
    if (rc) return rc;
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(pem, pem_len);
    free(pem);
    ERR_clear_error();
    if (!pkey) {
        snprintf(why, whylen,
                 "DKIM key %s is not a PEM private key (PKCS#8 or PKCS#1, unencrypted)", path);
        return -HERR_CONFIG;
    }
    int type = EVP_PKEY_get_base_id(pkey);
    if (any && (type == EVP_PKEY_RSA || type == EVP_PKEY_ED25519)) {
        alg = type == EVP_PKEY_RSA ? DKIM_ALG_RSA_SHA256 : DKIM_ALG_ED25519_SHA256;
    } else if (any) {
        snprintf(why, whylen,
                 "DKIM key %s is a%s key; DKIM signs with RSA (rsa-sha256) or Ed25519 "
                 "(ed25519-sha256) keys",
                 path, key_type_article(type));
        EVP_PKEY_free(pkey);
        return -HERR_CONFIG;
    }
    int want = alg == DKIM_ALG_RSA_SHA256 ? EVP_PKEY_RSA : EVP_PKEY_ED25519;
    if (type != want) {
        snprintf(why, whylen, "DKIM key %s is a%s key, algorithm %s needs %s", path,
                 key_type_article(type), alg_names[alg],
                 alg == DKIM_ALG_RSA_SHA256 ? "an RSA key" : "an Ed25519 key");
        EVP_PKEY_free(pkey);
        return -HERR_CONFIG;
    }
    if (type == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
        snprintf(why, whylen, "DKIM key %s has %d bits; RSA keys need at least %d (2048 advised)",
                 path, EVP_PKEY_get_bits(pkey), RSA_MIN_BITS);
        EVP_PKEY_free(pkey);
        return -HERR_CONFIG;
    }
    if (EVP_PKEY_get_size(pkey) > SIG_MAX_BYTES) {
        snprintf(why, whylen, "DKIM key %s is larger than %d bits", path, SIG_MAX_BYTES * 8);
        EVP_PKEY_free(pkey);
        return -HERR_CONFIG;
    }
    struct dkim_key *k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pkey);
        snprintf(why, whylen, "out of memory loading DKIM key %s", path);
        return -ENOMEM;
    }
    k->pkey = pkey;
    k->alg = alg;
    /* One signature now: a key OpenSSL cannot use fails the config check
     * rather than every message, and any lazily built key state exists
     * before the workers share the key. */
    unsigned char sig[SIG_MAX_BYTES];
    size_t sig_len = sizeof sig;
    struct tstate *t = tstate_get();
    if (!t || sign_raw(t, k, "herald", 6, sig, &sig_len) != 0) {
        snprintf(why, whylen, "DKIM key %s cannot sign with %s", path, alg_names[alg]);
        dkim_key_free(k);
        return -HERR_CONFIG;
    }
    *out = k;
    return 0;
}

int dkim_key_load(const char *path, enum dkim_alg alg, struct dkim_key **out, char *why,
                  size_t whylen)
{
    return key_load(path, false, alg, out, why, whylen);
}

int dkim_key_load_any(const char *path, struct dkim_key **out, char *why, size_t whylen)
{
    return key_load(path, true, DKIM_ALG_RSA_SHA256, out, why, whylen);
}

void dkim_key_free(struct dkim_key *key)
{
    if (!key) return;
    EVP_PKEY_free(key->pkey);
    free(key);
}

enum dkim_alg dkim_key_alg(const struct dkim_key *key)
{
    return key->alg;
}

int dkim_key_bits(const struct dkim_key *key)
{
    return EVP_PKEY_get_bits(key->pkey);
}

int dkim_key_txt(const struct dkim_key *key, struct hbuf *out)
{
    unsigned char raw[32];
    unsigned char *der = NULL;
    int rc;
    ERR_clear_error();
    if (key->alg == DKIM_ALG_ED25519_SHA256) {
        /* RFC 8463: the bare 32-byte public key, not an SPKI structure. */
        size_t n = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &n) != 1 || n != sizeof raw) {
            ERR_clear_error();
            return -HERR_TLS;
        }
        if ((rc = hbuf_append_str(out, "v=DKIM1; k=ed25519; p="))) return rc;
        return hbuf_append_base64(out, raw, n);
    }
    int n = i2d_PUBKEY(key->pkey, &der);
    if (n <= 0) {
        ERR_clear_error();
        return -HERR_TLS;
    }
    rc = hbuf_append_str(out, "v=DKIM1; k=rsa; p=");
    if (rc == 0) rc = hbuf_append_base64(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

/* ---- canonicalisation ---- */

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Buffered output to a digest or a test buffer: the body goes through in
 * chunks, never a call per byte. */
struct sink {
    int (*write)(void *arg, const char *p, size_t n);
    void *arg;
    size_t len;
    char buf[4096];
};

static int sink_flush(struct sink *s)
{
    int rc = s->len ? s->write(s->arg, s->buf, s->len) : 0;
    s->len = 0;
    return rc;
}

static int sink_put(struct sink *s, const char *p, size_t n)
{
    if (s->len + n > sizeof s->buf) {
        int rc = sink_flush(s);
        if (rc) return rc;
        if (n > sizeof s->buf) return s->write(s->arg, p, n);
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

/* Lines end at CRLF, bare CR or bare LF (what the dot-stuffer turns into
 * CRLF). Empty lines are owed, not written, until a non-empty line follows,
 * which drops the trailing ones. */
static int canon_body(struct sink *s, const char *b, size_t len)
{
    size_t owed = 0, i = 0;
    int rc;
    while (i < len) {
        size_t start = i;
        while (i < len && b[i] != '\r' && b[i] != '\n') i++;
        size_t end = i;
        if (i < len) i += (b[i] == '\r' && i + 1 < len && b[i + 1] == '\n') ? 2 : 1;
        while (end > start && is_wsp(b[end - 1])) end--;
        if (end == start) {
            owed++;
            continue;
        }
        for (; owed > 0; owed--)
            if ((rc = sink_put(s, "\r\n", 2))) return rc;
        for (size_t k = start; k < end;) {
            size_t run = k;
            while (run < end && !is_wsp(b[run])) run++;
            if ((rc = sink_put(s, b + k, run - k))) return rc;
            if (run == end) break;
            if ((rc = sink_put(s, " ", 1))) return rc;
            while (is_wsp(b[run])) run++; /* end is not WSP: stops in time */
            k = run;
        }
        if ((rc = sink_put(s, "\r\n", 2))) return rc;
    }
    return sink_flush(s);
}

static int write_hbuf(void *arg, const char *p, size_t n)
{
    return hbuf_append(arg, p, n);
}

int dkim_canon_body(struct hbuf *out, const char *body, size_t len)
{
    struct sink s = {.write = write_hbuf, .arg = out};
    return canon_body(&s, body, len);
}

/* "Name : folded\r\n value \r\n" -> "name:folded value" (+ CRLF when crlf). */
static int canon_field(struct hbuf *out, const char *f, size_t len, bool crlf)
{
    const char *colon = memchr(f, ':', len);
    if (!colon) return -HERR_MALFORMED;
    size_t nlen = (size_t)(colon - f);
    while (nlen > 0 && is_wsp(f[nlen - 1])) nlen--;
    int rc = hbuf_reserve(out, len + 3);
    if (rc) return rc;
    char *o = out->data + out->len;
    for (size_t i = 0; i < nlen; i++) {
        char c = f[i];
        *o++ = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    *o++ = ':';
    bool pending_space = false, any = false;
    for (const char *p = colon + 1; p < f + len; p++) {
        char c = *p;
        if (c == '\r' || c == '\n') continue; /* unfold */
        if (is_wsp(c)) {
            pending_space = any; /* leading WSP of the value is dropped */
            continue;
        }
        if (pending_space) *o++ = ' ';
        pending_space = false;
        any = true;
        *o++ = c;
    }
    if (crlf) {
        *o++ = '\r';
        *o++ = '\n';
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int dkim_canon_header(struct hbuf *out, const char *field, size_t len)
{
    if (len >= 2 && field[len - 2] == '\r' && field[len - 1] == '\n') len -= 2;
    return canon_field(out, field, len, true);
}

/* ---- signing ---- */

/* The thread's ready-to-sign context for an RSA key (PKCS#1 v1.5 over a
 * SHA-256 digest), or NULL. Each thread signs with its own copy of the key:
 * an RSA key shared by threads makes every thread but one take OpenSSL's
 * slower shared-blinding path (measured: about a tenth of the sign time).
 * An entry keeps a reference to the original EVP_PKEY, so its address
 * cannot be reused by a later key while the entry exists. */
static EVP_PKEY_CTX *rsa_ctx(struct tstate *t, const struct dkim_key *k)
{
    for (unsigned i = 0; i < RSA_CTX_CACHE; i++)
        if (t->rsa[i].key == k && t->rsa[i].orig == k->pkey && t->rsa[i].ctx)
            return t->rsa[i].ctx;
    EVP_PKEY *own = EVP_PKEY_dup(k->pkey);
    EVP_PKEY_CTX *ctx = own ? EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL) : NULL;
    EVP_PKEY_free(own); /* the context holds its own reference */
    if (!ctx || EVP_PKEY_sign_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, sha256) != 1 || EVP_PKEY_up_ref(k->pkey) != 1) {
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    unsigned slot = t->rsa_next++ % RSA_CTX_CACHE;
    EVP_PKEY_CTX_free(t->rsa[slot].ctx);
    EVP_PKEY_free(t->rsa[slot].orig);
    t->rsa[slot].key = k;
    t->rsa[slot].orig = k->pkey;
    t->rsa[slot].ctx = ctx;
    return ctx;
}

static int sign_raw(struct tstate *t, const struct dkim_key *k, const void *data, size_t len,
                    unsigned char *sig, size_t *sig_len)
{
    unsigned char digest[32];
    unsigned int dlen = 0;
    int ok;
    ERR_clear_error();
    if (EVP_MD_CTX_reset(t->sign) != 1) return -HERR_TLS;
    if (k->alg == DKIM_ALG_RSA_SHA256) {
        EVP_PKEY_CTX *ctx = rsa_ctx(t, k);
        ok = ctx && EVP_DigestInit_ex(t->hash, sha256, NULL) == 1 &&
             EVP_DigestUpdate(t->hash, data, len) == 1 &&
             EVP_DigestFinal_ex(t->hash, digest, &dlen) == 1 && dlen == sizeof digest &&
             EVP_PKEY_sign(ctx, sig, sig_len, digest, dlen) == 1;
    } else {
        /* RFC 8463: PureEdDSA over the SHA-256 of the header data. */
        ok = EVP_DigestInit_ex(t->hash, sha256, NULL) == 1 &&
             EVP_DigestUpdate(t->hash, data, len) == 1 &&
             EVP_DigestFinal_ex(t->hash, digest, &dlen) == 1 && dlen == sizeof digest &&
             EVP_DigestSignInit_ex(t->sign, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1 &&
             EVP_DigestSign(t->sign, sig, sig_len, digest, dlen) == 1;
    }
    if (!ok) {
        ERR_clear_error();
        return -HERR_TLS;
    }
    return 0;
}

static int write_digest(void *arg, const char *p, size_t n)
{
    return EVP_DigestUpdate(arg, p, n) == 1 ? 0 : -HERR_TLS;
}

static int body_hash(struct tstate *t, const char *body, size_t len, char b64[64])
{
    struct sink s = {.write = write_digest, .arg = t->hash};
    unsigned char md[32];
    unsigned int mdlen = 0;
    ERR_clear_error();
    if (EVP_DigestInit_ex(t->hash, sha256, NULL) != 1) goto fail;
    int rc = canon_body(&s, body, len);
    if (rc == -HERR_TLS) goto fail;
    if (rc) return rc;
    if (EVP_DigestFinal_ex(t->hash, md, &mdlen) != 1 || mdlen != sizeof md) goto fail;
    EVP_EncodeBlock((unsigned char *)b64, md, (int)mdlen);
    return 0;
fail:
    ERR_clear_error();
    return -HERR_TLS;
}

struct field {
    const char *p;
    size_t len; /* without the final CRLF */
};

/* Header fields of hdr (which ends with the CRLF of its last field);
 * continuation lines start with WSP. */
static int split_fields(const char *hdr, size_t len, struct field *f, size_t *n)
{
    size_t i = 0;
    *n = 0;
    while (i < len) {
        if (is_wsp(hdr[i]) || *n == MAX_HEADER_FIELDS) return -HERR_MALFORMED;
        size_t start = i;
        for (;;) {
            const char *nl = memchr(hdr + i, '\n', len - i);
            if (!nl) return -HERR_MALFORMED;
            i = (size_t)(nl - hdr) + 1;
            if (i >= len || !is_wsp(hdr[i])) break;
        }
        size_t end = i;
        while (end > start && (hdr[end - 1] == '\n' || hdr[end - 1] == '\r')) end--;
        f[*n].p = hdr + start;
        f[*n].len = end - start;
        (*n)++;
    }
    return 0;
}

static bool field_is(const struct field *f, const char *name)
{
    size_t n = strlen(name);
    if (f->len <= n || strncasecmp(f->p, name, n) != 0) return false;
    for (size_t i = n; i < f->len; i++) {
        if (f->p[i] == ':') return true;
        if (!is_wsp(f->p[i])) return false;
    }
    return false;
}

/* Folding writer: tokens go on the current line while it stays within 78
 * columns, else on a continuation line. */
struct fold {
    struct hbuf *h;
    size_t col;
};

static int fold_put(struct fold *f, const char *tok, size_t n, bool space)
{
    int rc;
    if (f->col + n + (space ? 1 : 0) > FOLD_COLS && f->col > 1) {
        if ((rc = hbuf_append(f->h, "\r\n ", 3))) return rc;
        f->col = 1;
    } else if (space) {
        if ((rc = hbuf_append(f->h, " ", 1))) return rc;
        f->col++;
    }
    f->col += n;
    return hbuf_append(f->h, tok, n);
}

static int fold_putf(struct fold *f, bool space, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fold_putf(struct fold *f, bool space, const char *fmt, ...)
{
    char tok[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tok, sizeof tok, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tok) return -HERR_TOO_LONG;
    return fold_put(f, tok, (size_t)n, space);
}

static bool tag_value_ok(const char *s)
{
    /* d= and s= are domain names; anything else would break the tag list. */
    if (!s || !*s || strlen(s) > 253) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '_'))
            return false;
    return true;
}

/* One DKIM-Signature field appended to out. A name present several times
 * is listed once per instance and signed bottom-up (RFC 6376 5.4.2). */
static int sign_one(struct tstate *t, const struct dkim_sig *s, const struct field *fields,
                    size_t n_fields, const char *bh, int64_t now_s, struct hbuf *out)
{
    if (!s->key || !tag_value_ok(s->domain) || !tag_value_ok(s->selector))
        return -HERR_MALFORMED;
    size_t start = out->len;
    struct fold f = {.h = out, .col = 15};
    int rc = hbuf_append_str(out, "DKIM-Signature:");
    if (rc == 0) rc = fold_putf(&f, true, "v=1; a=%s;", alg_names[s->key->alg]);
    if (rc == 0) rc = fold_put(&f, "c=relaxed/relaxed;", 18, true);
    if (rc == 0) rc = fold_putf(&f, true, "d=%s;", s->domain);
    if (rc == 0) rc = fold_putf(&f, true, "s=%s;", s->selector);
    if (rc == 0) rc = fold_putf(&f, true, "t=%lld;", (long long)now_s);
    if (rc == 0 && s->expire_s > 0)
        rc = fold_putf(&f, true, "x=%lld;", (long long)(now_s + s->expire_s));
    if (rc) return rc;

    hbuf_reset(&t->hd);
    bool first = true, has_from = false;
    for (size_t h = 0; h < dkim_n_signed_headers; h++) {
        const char *name = dkim_signed_headers[h];
        for (size_t i = n_fields; i-- > 0;) {
            if (!field_is(&fields[i], name)) continue;
            if ((rc = canon_field(&t->hd, fields[i].p, fields[i].len, true))) return rc;
            if ((rc = fold_putf(&f, first, "%s%s", first ? "h=" : ":", name))) return rc;
            first = false;
            if (h == 0) has_from = true;
        }
    }
    /* "from" once more names a From that does not exist, so one added
     * above the signed From (shown by some clients) fails verification. */
    if (!has_from) return -HERR_MALFORMED;
    if ((rc = fold_put(&f, ":from", 5, false))) return rc;
    if ((rc = fold_put(&f, ";", 1, false))) return rc;
    if ((rc = fold_putf(&f, true, "bh=%s;", bh)) || (rc = fold_put(&f, "b=", 2, true))) return rc;

    /* The signature covers its own field with b= empty, as written so far. */
    if ((rc = canon_field(&t->hd, out->data + start, out->len - start, false))) return rc;
    unsigned char sig[SIG_MAX_BYTES];
    size_t sig_len = sizeof sig;
    if ((rc = sign_raw(t, s->key, t->hd.data, t->hd.len, sig, &sig_len))) return rc;
    char b64[SIG_MAX_BYTES * 4 / 3 + 8];
    size_t b64_len = (size_t)EVP_EncodeBlock((unsigned char *)b64, sig, (int)sig_len);
    for (size_t i = 0; i < b64_len;) {
        if (f.col >= FOLD_COLS) {
            if ((rc = hbuf_append(out, "\r\n ", 3))) return rc;
            f.col = 1;
        }
        size_t n = FOLD_COLS - f.col;
        if (n > b64_len - i) n = b64_len - i;
        if ((rc = hbuf_append(out, b64 + i, n))) return rc;
        f.col += n;
        i += n;
    }
    return hbuf_append(out, "\r\n", 2);
}

int dkim_sign(const struct dkim_sig *sigs, size_t n_sigs, const char *msg, size_t len,
              int64_t now_s, struct hbuf *out)
{
    if (n_sigs == 0) return 0;
    struct tstate *t = tstate_get();
    if (!t) return -ENOMEM;
    const char *sep = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (msg[i] == '\r' && memcmp(msg + i, "\r\n\r\n", 4) == 0) {
            sep = msg + i;
            break;
        }
    }
    if (!sep) return -HERR_MALFORMED;
    size_t hdr_len = (size_t)(sep - msg) + 2;
    const char *body = sep + 4;
    struct field fields[MAX_HEADER_FIELDS];
    size_t n_fields = 0;
    int rc = split_fields(msg, hdr_len, fields, &n_fields);
    if (rc) return rc;
    char bh[64];
    if ((rc = body_hash(t, body, len - (size_t)(body - msg), bh))) return rc;
    size_t start = out->len;
    for (size_t i = 0; i < n_sigs && rc == 0; i++)
        rc = sign_one(t, &sigs[i], fields, n_fields, bh, now_s, out);
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = '\0';
    }
    return rc;
}

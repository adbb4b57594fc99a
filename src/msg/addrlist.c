/* RFC 5322 address lists as they appear in From:, Sender:, To: of
 * caller-supplied (`raw`) messages: display names (atoms, quoted strings,
 * encoded words, the obsolete '.'), comments (nested, with quoted pairs),
 * folding, groups ("name: a@b, c@d;"), angle addresses with an obsolete
 * source route, quoted local parts and domain literals.
 *
 * herald decides on the result which tenant a message speaks for, so the
 * parser takes the grammar's reading of the bytes, not a guess: the old
 * check took the last '<' and the last '@' and let
 * `ceo@victim.example, <x@tenant.test>` through as tenant.test. Anything
 * the grammar does not produce is malformed. */
#include <stdbool.h>
#include <string.h>

#include "herald/job.h"

struct cursor {
    const char *p, *end;
};

static bool is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* What may sit in a comment, a quoted string or a domain literal (their
 * delimiters aside): visible ASCII and folding whitespace; never a control
 * byte or NUL. */
static bool is_text(char c)
{
    return (c > ' ' && c < 0x7f) || is_wsp(c);
}

/* Whitespace, folding and comments. A comment may nest and may hold quoted
 * pairs; one that does not close makes the value malformed. */
static int skip_cfws(struct cursor *c)
{
    for (;;) {
        while (c->p < c->end && is_wsp(*c->p))
            c->p++;
        if (c->p >= c->end || *c->p != '(') return 0;
        unsigned depth = 0;
        do {
            if (c->p >= c->end) return -HERR_MALFORMED;
            char ch = *c->p++;
            if (!is_text(ch)) return -HERR_MALFORMED;
            if (ch == '\\') {
                if (c->p >= c->end || !is_text(*c->p)) return -HERR_MALFORMED;
                c->p++;
            } else if (ch == '(') {
                if (++depth > 32) return -HERR_MALFORMED;
            } else if (ch == ')') {
                depth--;
            }
        } while (depth > 0);
    }
}

static bool at(struct cursor *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

/* A word: an atom or a quoted string. Returns 1 when one was read, 0 when
 * the next byte starts neither, < 0 on an unterminated quoted string. */
static int word(struct cursor *c)
{
    if (at(c, '"')) {
        c->p++;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\') {
                if (++c->p >= c->end) return -HERR_MALFORMED;
            }
            if (!is_text(*c->p)) return -HERR_MALFORMED;
            c->p++;
        }
        if (c->p >= c->end) return -HERR_MALFORMED;
        c->p++;
        return 1;
    }
    if (c->p >= c->end || !is_atext((unsigned char)*c->p)) return 0;
    while (c->p < c->end && is_atext((unsigned char)*c->p))
        c->p++;
    return 1;
}

/* domain = dot-atom / domain-literal (CFWS around the dots, as the
 * obsolete syntax allows). The domain is copied, lower-cased and without
 * CFWS, into out. */
static int domain(struct cursor *c, char *out, size_t cap)
{
    size_t o = 0;
    int rc = skip_cfws(c);
    if (rc) return rc;
    if (at(c, '[')) {
        const char *s = c->p;
        while (c->p < c->end && *c->p != ']') {
            if (*c->p == '[' && c->p != s) return -HERR_MALFORMED;
            if (*c->p == '\\') return -HERR_MALFORMED; /* obsolete quoted pair: refuse */
            if (!is_text(*c->p) || is_wsp(*c->p)) return -HERR_MALFORMED;
            c->p++;
        }
        if (c->p >= c->end) return -HERR_MALFORMED;
        c->p++;
        size_t n = (size_t)(c->p - s);
        if (n + 1 > cap) return -HERR_TOO_LONG;
        memcpy(out, s, n);
        out[n] = '\0';
        return skip_cfws(c);
    }
    for (;;) {
        if (c->p >= c->end || !is_atext((unsigned char)*c->p)) return -HERR_MALFORMED;
        while (c->p < c->end && is_atext((unsigned char)*c->p)) {
            if (o + 1 >= cap) return -HERR_TOO_LONG;
            char ch = *c->p++;
            out[o++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        if ((rc = skip_cfws(c))) return rc;
        if (!at(c, '.')) break;
        c->p++;
        if (o + 1 >= cap) return -HERR_TOO_LONG;
        out[o++] = '.';
        if ((rc = skip_cfws(c))) return rc;
    }
    out[o] = '\0';
    return 0;
}

/* local-part "@" domain, starting at the local part. */
static int addr_spec(struct cursor *c, char *dom, size_t cap)
{
    int rc = skip_cfws(c);
    if (rc) return rc;
    for (;;) {
        if ((rc = word(c)) < 0) return rc;
        if (rc == 0) return -HERR_MALFORMED;
        if ((rc = skip_cfws(c))) return rc;
        if (!at(c, '.')) break;
        c->p++;
        if ((rc = skip_cfws(c))) return rc;
    }
    if (!at(c, '@')) return -HERR_MALFORMED;
    c->p++;
    return domain(c, dom, cap);
}

/* "<" [obs-route] addr-spec ">", the cursor on the '<'. */
static int angle_addr(struct cursor *c, char *dom, size_t cap)
{
    c->p++;
    int rc = skip_cfws(c);
    if (rc) return rc;
    if (at(c, '@') || at(c, ',')) {
        /* obs-route: "@a.example,@b.example:" — relays from another age;
         * the mailbox is what follows the colon. */
        char hop[256];
        while (at(c, '@') || at(c, ',')) {
            if (at(c, ',')) {
                c->p++;
            } else {
                c->p++;
                if ((rc = domain(c, hop, sizeof hop))) return rc;
            }
            if ((rc = skip_cfws(c))) return rc;
        }
        if (!at(c, ':')) return -HERR_MALFORMED;
        c->p++;
    }
    if ((rc = addr_spec(c, dom, cap))) return rc;
    if (!at(c, '>')) return -HERR_MALFORMED;
    c->p++;
    return skip_cfws(c);
}

static int add_mailbox(struct addrlist *l, const char *dom, bool in_group)
{
    if (l->n_mailboxes < ADDRLIST_KEEP) {
        memcpy(l->domains[l->n_mailboxes], dom, strlen(dom) + 1);
        l->in_group[l->n_mailboxes] = in_group;
    }
    l->n_mailboxes++;
    return 0;
}

/* One mailbox or (outside a group) one group, at the start of an element.
 * Display names are phrases: words and, in the obsolete syntax, dots. */
static int address(struct cursor *c, struct addrlist *l, bool in_group)
{
    char dom[256];
    int rc = skip_cfws(c);
    if (rc) return rc;
    if (at(c, '<')) {
        if ((rc = angle_addr(c, dom, sizeof dom))) return rc;
        return add_mailbox(l, dom, in_group);
    }
    /* Read the phrase or local part, then let the next byte decide. */
    const struct cursor start = *c;
    unsigned words = 0;
    for (;;) {
        if ((rc = word(c)) < 0) return rc;
        if (rc == 0 && !at(c, '.')) break;
        if (rc == 0) c->p++; /* obs-phrase / dotted local part */
        words++;
        if ((rc = skip_cfws(c))) return rc;
    }
    if (words == 0) return -HERR_MALFORMED;
    if (at(c, '<')) {
        if ((rc = angle_addr(c, dom, sizeof dom))) return rc;
        return add_mailbox(l, dom, in_group);
    }
    if (at(c, '@')) {
        *c = start;
        if ((rc = addr_spec(c, dom, sizeof dom))) return rc;
        return add_mailbox(l, dom, in_group);
    }
    if (at(c, ':') && !in_group) {
        c->p++;
        l->n_groups++;
        /* group-list: mailboxes, possibly none, up to ';'. */
        if ((rc = skip_cfws(c))) return rc;
        while (!at(c, ';')) {
            if (c->p >= c->end) return -HERR_MALFORMED;
            if (at(c, ',')) { /* obs-mbox-list: empty elements */
                c->p++;
                if ((rc = skip_cfws(c))) return rc;
                continue;
            }
            if ((rc = address(c, l, true))) return rc;
            if (!at(c, ',') && !at(c, ';')) return -HERR_MALFORMED;
        }
        c->p++;
        return skip_cfws(c);
    }
    return -HERR_MALFORMED; /* a bare name with no address */
}

int addrlist_parse(const char *v, size_t n, struct addrlist *out)
{
    memset(out, 0, sizeof *out);
    struct cursor c = {v, v + n};
    int rc = skip_cfws(&c);
    if (rc) return rc;
    while (c.p < c.end) {
        if (at(&c, ',')) { /* obs-addr-list: empty elements */
            c.p++;
            if ((rc = skip_cfws(&c))) return rc;
            continue;
        }
        if ((rc = address(&c, out, false))) return rc;
        if (c.p < c.end && !at(&c, ',')) return -HERR_MALFORMED;
    }
    if (out->n_mailboxes == 0 && out->n_groups == 0) return -HERR_MALFORMED;
    return 0;
}

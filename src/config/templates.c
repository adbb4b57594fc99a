/* tenants.NAME.templates and the top-level `addresses:` section. Template
 * files are read here, at load, so a missing or broken template is a config
 * error with a position rather than a rejected job at 3 a.m.; a reload reads
 * them again. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/loader.h"
#include "herald/job.h"
#include "herald/template.h"

#define TEMPLATE_FILE_MAX  (1u << 20)
#define TEMPLATES_MAX      1000
#define SUBJECT_MAX        900
#define TYPO_DOMAINS_MAX   1000

struct template_ctx {
    struct cfg_template *t;
    const struct ynode *subject, *text, *html;
};

/* path relative to the config file's directory (absolute paths stay). */
static char *resolve(const char *config_name, const char *path)
{
    if (path[0] == '/') return strdup(path);
    const char *slash = strrchr(config_name, '/');
    size_t dir_len = slash ? (size_t)(slash - config_name) : 0;
    size_t n = dir_len + strlen(path) + 3;
    char *out = malloc(n);
    if (!out) return NULL;
    if (slash)
        snprintf(out, n, "%.*s/%s", (int)dir_len, config_name, path);
    else
        snprintf(out, n, "%s", path);
    return out;
}

/* The whole file, NUL-terminated; *why says what went wrong. */
static char *read_small_file(const char *path, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "not a regular file";
    } else if (st.st_size > (off_t)TEMPLATE_FILE_MAX) {
        *why = "larger than 1 MiB";
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        *why = "out of memory";
    } else {
        size_t got = 0, size = (size_t)st.st_size;
        while (got < size) {
            ssize_t n = read(fd, buf + got, size - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        buf[got] = '\0';
        if (memchr(buf, '\0', got)) {
            *why = "contains a NUL byte";
            free(buf);
            buf = NULL;
        }
    }
    close(fd);
    return buf;
}

static void line_col(const char *s, size_t offset, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int load_body(struct loader *L, const struct ynode *v, const char *where, const char *kind,
                     char **path_out, char **body_out)
{
    char *path = NULL;
    int rc = loader_str(L, v, &path);
    if (rc || !path) return rc;
    *path_out = resolve(L->name, path);
    free(path);
    if (!*path_out) return loader_oom(L);
    const char *why = NULL;
    *body_out = read_small_file(*path_out, &why);
    if (!*body_out)
        return loader_fail(L, v, "cannot read %s template '%s' of %s: %s", kind, *path_out, where,
                           why);
    struct template_error te;
    if (template_render(*body_out, strlen(*body_out), TEMPLATE_ESC_NONE, NULL, NULL, 0, NULL,
                        &te)) {
        size_t line, col;
        line_col(*body_out, te.offset, &line, &col);
        return loader_fail(L, v, "%s template '%s' of %s, line %zu column %zu: %s", kind,
                           *path_out, where, line, col, te.why);
    }
    return 0;
}

static int template_key(struct loader *L, const char *key, const struct ynode *k,
                        const struct ynode *v, void *obj)
{
    struct template_ctx *c = obj;
    (void)k;
    if (strcmp(key, "subject") == 0) {
        c->subject = v;
        return loader_str(L, v, &c->t->subject);
    }
    if (strcmp(key, "text") == 0) {
        c->text = ynode_is_null(v) ? NULL : v;
        return 0;
    }
    if (strcmp(key, "html") == 0) {
        c->html = ynode_is_null(v) ? NULL : v;
        return 0;
    }
    return LOADER_UNKNOWN_KEY;
}

int loader_templates(struct loader *L, const struct ynode *v, const char *tenant_where,
                     struct cfg_tenant *t)
{
    if (ynode_is_null(v)) return 0;
    char where[160];
    snprintf(where, sizeof where, "%s.templates", tenant_where);
    int rc = loader_check_map(L, v, where);
    if (rc) return rc;
    size_t n = v->n_children / 2;
    if (n > TEMPLATES_MAX) return loader_fail(L, v, "at most %d templates per tenant", TEMPLATES_MAX);
    if (n == 0) return 0;
    if (!(t->templates = calloc(n, sizeof(*t->templates)))) return loader_oom(L);
    for (const struct ynode *key = v->child; key && key->next; key = key->next->next) {
        struct cfg_template *tp = &t->templates[t->n_templates++];
        if (!(tp->name = strdup(key->str))) return loader_oom(L);
        char tw[240];
        snprintf(tw, sizeof tw, "%s.%s", where, tp->name);
        if (loader_check_name(key->str)) {
            char tmp[160];
            return loader_fail(L, key, "invalid template name %s: expected %s",
                               loader_show(key, tmp, sizeof tmp), loader_check_name(key->str));
        }
        struct template_ctx c = {.t = tp};
        if ((rc = loader_walk(L, key->next, tw, template_key, &c))) return rc;
        if (!tp->subject)
            return loader_fail(L, key, "missing required key 'subject' in %s", tw);
        if (!c.text && !c.html)
            return loader_fail(L, key, "%s needs text and/or html (a file name)", tw);
        size_t slen = strlen(tp->subject);
        if (slen > SUBJECT_MAX || strpbrk(tp->subject, "\r\n"))
            return loader_fail(L, c.subject, "subject of %s must be one line of at most %d bytes",
                               tw, SUBJECT_MAX);
        struct template_error te;
        if (template_render(tp->subject, slen, TEMPLATE_ESC_HEADER, NULL, NULL, 0, NULL, &te))
            return loader_fail(L, c.subject, "subject of %s, column %zu: %s", tw, te.offset + 1,
                               te.why);
        if (c.text && (rc = load_body(L, c.text, tw, "text", &tp->text_path, &tp->text))) return rc;
        if (c.html && (rc = load_body(L, c.html, tw, "html", &tp->html_path, &tp->html))) return rc;
    }
    return 0;
}

void loader_templates_free(struct cfg_tenant *t)
{
    for (size_t i = 0; i < t->n_templates; i++) {
        struct cfg_template *tp = &t->templates[i];
        free(tp->name);
        free(tp->subject);
        free(tp->text);
        free(tp->html);
        free(tp->text_path);
        free(tp->html_path);
    }
    free(t->templates);
    t->templates = NULL;
    t->n_templates = 0;
}

const struct cfg_template *config_template(const struct cfg_tenant *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->n_templates; i++)
        if (strcmp(t->templates[i].name, name) == 0) return &t->templates[i];
    return NULL;
}

/* ---- addresses ---- */

static int addresses_key(struct loader *L, const char *key, const struct ynode *k,
                         const struct ynode *v, void *obj)
{
    struct cfg_addresses *a = obj;
    if (strcmp(key, "typo_policy") == 0) {
        int x = (int)a->typo_policy;
        int rc = loader_enum(L, k, v, &cfg_enum_typo_policy, &x);
        a->typo_policy = (enum cfg_typo_policy)x;
        return rc;
    }
    if (strcmp(key, "typo_domains") == 0) {
        if (v->type == YNODE_SEQ && v->n_children > TYPO_DOMAINS_MAX)
            return loader_fail(L, v, "at most %d typo_domains", TYPO_DOMAINS_MAX);
        int rc = loader_strlist(L, v, loader_check_domain, true, &a->typo_domains);
        for (size_t i = 0; rc == 0 && i < a->typo_domains.n; i++)
            if (strlen(a->typo_domains.items[i]) > 64)
                return loader_fail(L, v, "typo_domains entries are at most 64 characters");
        if (rc == 0 && a->typo_domains.n == 0 && !(a->typo_domains.items = calloc(1, sizeof(char *))))
            return loader_oom(L);
        return rc;
    }
    return LOADER_UNKNOWN_KEY;
}

int loader_addresses(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "addresses", addresses_key, &L->cfg->addresses);
}

/* An explicit empty list stays empty (items non-NULL); absent gets the
 * built-in provider list. */
int loader_addresses_defaults(struct cfg_addresses *a)
{
    if (a->typo_domains.items) return 0;
    size_t n = 0;
    while (typo_default_domains[n])
        n++;
    if (!(a->typo_domains.items = calloc(n, sizeof(char *)))) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(a->typo_domains.items[i] = strdup(typo_default_domains[i]))) return -ENOMEM;
        a->typo_domains.n++;
    }
    return 0;
}

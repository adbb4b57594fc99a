/* Template renderer: placeholders with blanks, escaping per context,
 * missing variables, syntax errors with offsets, output bounds. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "herald/template.h"

static const char *const vars[][2] = {
    {"name", "Ann & <Bob>"}, {"q", "\"it's\""}, {"crlf", "a\r\nb"}, {"empty", ""}, {"x.y-z_1", "ok"},
};

static const char *lookup(void *ctx, const char *name, size_t len, size_t *vlen)
{
    (void)ctx;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(vars); i++)
        if (strlen(vars[i][0]) == len && memcmp(vars[i][0], name, len) == 0) {
            *vlen = strlen(vars[i][1]);
            return vars[i][1];
        }
    return NULL;
}

static int render(const char *tpl, enum template_escape esc, struct hbuf *out,
                  struct template_error *err)
{
    hbuf_reset(out);
    int rc = template_render(tpl, strlen(tpl), esc, lookup, NULL, 1000, out, err);
    hbuf_append(out, "", 0);
    return rc;
}

int main(void)
{
    struct hbuf out;
    struct template_error err;
    hbuf_init(&out);
    static const struct {
        const char *tpl;
        enum template_escape esc;
        const char *want;
    } ok[] = {
        {"Hi {{name}}!", TEMPLATE_ESC_NONE, "Hi Ann & <Bob>!"},
        {"Hi {{ name }}!", TEMPLATE_ESC_HTML, "Hi Ann &amp; &lt;Bob&gt;!"},
        {"{{\tq\t}}", TEMPLATE_ESC_HTML, "&quot;it&#39;s&quot;"},
        {"[{{empty}}]", TEMPLATE_ESC_HEADER, "[]"},
        {"{{x.y-z_1}}{{x.y-z_1}}", TEMPLATE_ESC_NONE, "okok"},
        {"a\\{{name}} {", TEMPLATE_ESC_NONE, "a{{name}} {"},
        {"{ {name} }} {", TEMPLATE_ESC_NONE, "{ {name} }} {"},
        {"{{crlf}}", TEMPLATE_ESC_NONE, "a\r\nb"},
        {"", TEMPLATE_ESC_NONE, ""},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(ok); i++) {
        CHECK_EQ_INT(render(ok[i].tpl, ok[i].esc, &out, &err), 0);
        CHECK_EQ_STR(out.data, ok[i].want);
        CHECK_EQ_INT(template_render(ok[i].tpl, strlen(ok[i].tpl), ok[i].esc, NULL, NULL, 0, NULL,
                                     &err),
                     0);
    }
    CHECK_EQ_INT(render("Dear {{ nobody }},", TEMPLATE_ESC_NONE, &out, &err), -ENOENT);
    CHECK_EQ_STR(err.name, "nobody");
    CHECK_EQ_INT(render("S: {{crlf}}", TEMPLATE_ESC_HEADER, &out, &err), -EILSEQ);
    CHECK_EQ_STR(err.name, "crlf");
    static const struct {
        const char *tpl;
        size_t offset;
        const char *why;
    } bad[] = {
        {"ab {{ }}", 3, "without a variable name"},
        {"{{name", 0, "not closed"},
        {"x {{name}", 2, "not closed"},
        {"{{na me}}", 0, "not closed"},
        {"{{name}}{{", 8, "without a variable name"},
        {"{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}", 0, "longer than 64"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(template_render(bad[i].tpl, strlen(bad[i].tpl), TEMPLATE_ESC_NONE, NULL, NULL,
                                     0, NULL, &err),
                     -HERR_MALFORMED);
        CHECK_EQ_INT(err.offset, bad[i].offset);
        CHECK(err.why && strstr(err.why, bad[i].why));
    }
    hbuf_reset(&out);
    CHECK_EQ_INT(template_render("{{name}}{{name}}", 16, TEMPLATE_ESC_NONE, lookup, NULL, 15, &out,
                                 &err),
                 -HERR_TOO_LONG);
    hbuf_free(&out);
    return check_report("test_template");
}

/* Names of the session's states and stages (logs, notes) and the outcome
 * class of a reply code: pure tables, shared by the session, the pool and
 * smtp-test. */
#include "herald/smtp.h"

static const char *const state_names[SMTP_STATE_COUNT] = {
    [SMTP_S_INIT] = "init", [SMTP_S_BANNER] = "banner", [SMTP_S_EHLO] = "ehlo",
    [SMTP_S_HELO] = "helo", [SMTP_S_STARTTLS] = "starttls", [SMTP_S_TLS] = "tls",
    [SMTP_S_AUTH] = "auth", [SMTP_S_READY] = "ready",   [SMTP_S_MAIL] = "mail",
    [SMTP_S_RCPT] = "rcpt", [SMTP_S_DATA] = "data",     [SMTP_S_BODY] = "body",
    [SMTP_S_RSET] = "rset", [SMTP_S_QUIT] = "quit",     [SMTP_S_CLOSED] = "closed",
};

static const char *const stage_names[SMTP_STAGE_COUNT] = {
    [SMTP_STAGE_CONNECT] = "connect", [SMTP_STAGE_BANNER] = "banner", [SMTP_STAGE_EHLO] = "ehlo",
    [SMTP_STAGE_TLS] = "tls",         [SMTP_STAGE_AUTH] = "auth",
    [SMTP_STAGE_MAIL] = "mail",       [SMTP_STAGE_RCPT] = "rcpt",     [SMTP_STAGE_DATA] = "data",
    [SMTP_STAGE_BODY] = "body",       [SMTP_STAGE_RSET] = "rset",     [SMTP_STAGE_IDLE] = "idle",
    [SMTP_STAGE_QUIT] = "quit",
};

const char *smtp_state_name(enum smtp_state s)
{
    return (unsigned)s < SMTP_STATE_COUNT ? state_names[s] : "?";
}

const char *smtp_stage_name(enum smtp_stage s)
{
    return (unsigned)s < SMTP_STAGE_COUNT ? stage_names[s] : "?";
}

enum smtp_outcome smtp_outcome_of(int code)
{
    switch (code / 100) {
    case 2:
        return SMTP_OUT_OK;
    case 4:
        return SMTP_OUT_TEMPFAIL;
    case 5:
        return SMTP_OUT_PERMFAIL;
    default:
        return SMTP_OUT_NETFAIL;
    }
}

/* raw_check on arbitrary bytes: never crashes; what it accepts has a From
 * header, no NUL, only 7-bit bytes and no line over 998 octets, and stays
 * one message once normalised and dot-stuffed. The header helpers run on
 * whatever From/Message-ID value it found. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *m = (const char *)data;
    struct raw_info info;
    char why[160];
    int rc = raw_check(m, size, &info, why, sizeof why);
    if (rc != 0) {
        if (rc != -HERR_MALFORMED || !why[0]) abort();
        return 0;
    }
    if (!info.has_from || !info.from_value || info.header_len > size) abort();
    if (info.from_value < m || info.from_value + info.from_len > m + size) abort();
    size_t col = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == 0 || data[i] >= 0x80) abort();
        col = data[i] == '\r' || data[i] == '\n' ? 0 : col + 1;
        if (col > 998) abort();
    }
    char id[160];
    struct addrlist l;
    addrlist_parse(info.from_value, info.from_len, &l);
    if (info.has_message_id) raw_message_id(info.msgid_value, info.msgid_len, id, sizeof id);
    struct hbuf w;
    hbuf_init(&w);
    if (msg_append_dotstuffed(&w, m, size) == 0) {
        if (w.len && memmem(w.data, w.len, "\r\n.\r\n", 5)) abort();
        if (w.len >= 3 && memcmp(w.data, ".\r\n", 3) == 0) abort();
    }
    hbuf_free(&w);
    return 0;
}

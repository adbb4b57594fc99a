/* Reply objects for hiredis's reader from per-connection blocks
 * (replies.h). hiredis builds a reply bottom-up through these functions:
 * each object is placed in its parent's element array here, as hiredis's
 * own functions do. */
#include <stdlib.h>
#include <string.h>

#include "replies.h"

#define BLOCK_MIN        (64 * 1024)
#define REPLY_STORE_KEEP (1024 * 1024) /* what reset keeps for the next reply */

struct reply_block {
    struct reply_block *next;
    size_t used, cap;
    _Alignas(16) char mem[];
};

static void *store_alloc(struct reply_store *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct reply_block *b = s->cur;
    while (b && b->cap - b->used < n)
        b = b->next; /* a kept block further on may fit */
    if (!b) {
        size_t cap = n > BLOCK_MIN ? n : BLOCK_MIN;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        /* After the current one, so the blocks in use stay a prefix. */
        if (s->cur) {
            b->next = s->cur->next;
            s->cur->next = b;
        } else {
            b->next = s->head;
            s->head = b;
        }
    }
    s->cur = b;
    void *p = b->mem + b->used;
    b->used += n;
    return p;
}

static redisReply *new_object(const redisReadTask *task, int type)
{
    struct reply_store *s = task->privdata;
    redisReply *r = store_alloc(s, sizeof *r);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->type = type;
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    struct reply_store *s = task->privdata;
    char *copy = store_alloc(s, len + 1);
    if (!copy) return NULL;
    memcpy(copy, str, len);
    copy[len] = '\0';
    redisReply *r = new_object(task, task->type);
    if (!r) return NULL;
    r->str = copy;
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    struct reply_store *s = task->privdata;
    redisReply **el = NULL;
    if (elements > 0) {
        el = store_alloc(s, (size_t)elements * sizeof *el);
        if (!el) return NULL;
        memset(el, 0, (size_t)elements * sizeof *el);
    }
    redisReply *r = new_object(task, REDIS_REPLY_ARRAY);
    if (!r) return NULL;
    r->element = el;
    r->elements = elements > 0 ? (size_t)elements : 0;
    return r;
}

static void *create_integer(const redisReadTask *task, long long v)
{
    redisReply *r = new_object(task, REDIS_REPLY_INTEGER);
    if (r) r->integer = v;
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    return new_object(task, REDIS_REPLY_NIL);
}

/* The store owns everything: a reply dropped half-built (a protocol error,
 * the reader freed) goes with the next reset. */
static void free_object(void *obj)
{
    (void)obj;
}

static redisReplyObjectFunctions store_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};

redisReader *reply_store_reader(struct reply_store *s)
{
    redisReader *r = redisReaderCreateWithFunctions(&store_functions);
    if (r) r->privdata = s;
    return r;
}

void reply_store_reset(struct reply_store *s)
{
    size_t kept = 0;
    struct reply_block **p = &s->head;
    while (*p) {
        struct reply_block *b = *p;
        if (kept + b->cap > REPLY_STORE_KEEP && kept > 0) {
            *p = b->next;
            free(b);
            continue;
        }
        kept += b->cap;
        b->used = 0;
        p = &b->next;
    }
    s->cur = s->head;
}

void reply_store_free(struct reply_store *s)
{
    while (s->head) {
        struct reply_block *b = s->head;
        s->head = b->next;
        free(b);
    }
    s->cur = NULL;
}

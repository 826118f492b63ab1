/*
 * frames.c - tz_frames: an owned list of message frames.
 */
#include "tz.h"

#include <stdlib.h>
#include <string.h>

/* Room for `more` frames beyond f->n. */
static int reserve(tz_frames *f, size_t more)
{
    if (f->cap - f->n >= more)
        return SB_OK;
    size_t cap = f->cap ? f->cap : 4;
    while (cap - f->n < more)
        cap *= 2;
    tz_frame *v = realloc(f->v, cap * sizeof *v);
    if (!v)
        return SB_ERR_NOMEM;
    f->v = v;
    f->cap = cap;
    return SB_OK;
}

static int adopt(tz_frames *f, unsigned char *data, size_t len)
{
    if (reserve(f, 1) < 0) {
        free(data);
        return SB_ERR_NOMEM;
    }
    f->v[f->n++] = (tz_frame){data, len};
    f->bytes += len;
    return SB_OK;
}

int tz_frames_push2(tz_frames *f, const void *a, size_t alen, const void *b, size_t blen)
{
    /* Never NULL, so that zmq_send() and memcpy() never see a NULL buffer. */
    unsigned char *data = malloc(alen + blen ? alen + blen : 1);
    if (!data)
        return SB_ERR_NOMEM;
    if (alen)
        memcpy(data, a, alen);
    if (blen)
        memcpy(data + alen, b, blen);
    return adopt(f, data, alen + blen);
}

int tz_frames_push(tz_frames *f, const void *data, size_t len)
{
    return tz_frames_push2(f, data, len, NULL, 0);
}

int tz_frames_push_sbuf(tz_frames *f, msgpack_sbuffer *sb)
{
    size_t len = sb->size;
    unsigned char *data = (unsigned char *)msgpack_sbuffer_release(sb);
    if (!data)
        return tz_frames_push(f, NULL, 0);
    return adopt(f, data, len);
}

int tz_frames_move(tz_frames *dst, tz_frames *src)
{
    if (reserve(dst, src->n) < 0)
        return SB_ERR_NOMEM;
    for (size_t i = 0; i < src->n; i++)
        dst->v[dst->n++] = src->v[i];
    dst->bytes += src->bytes;
    free(src->v);
    *src = (tz_frames){0};
    return SB_OK;
}

void tz_frames_clear(tz_frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].data);
    free(f->v);
    *f = (tz_frames){0};
}

bool tz_frames_same_peer(const tz_frames *a, const tz_frames *b)
{
    return a->n > 0 && b->n > 0 && a->v[0].len == b->v[0].len &&
           memcmp(a->v[0].data, b->v[0].data, a->v[0].len) == 0;
}

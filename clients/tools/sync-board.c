/*
 * sync-board - the two-user demo: one table shown as a live board with who is editing what.
 *
 * Line-oriented on purpose: the board is reprinted after every change. Commands on stdin:
 * "edit KEY" announces that this desk edits a row, "done KEY" ends it, "quit" leaves.
 * Run it on two desks with different --client-id values and change rows with psql.
 */
#include "tool_args.h"

#include <syncbroker/client.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHOWN 200
#define MAX_PRESENCE 64

static const char usage[] =
    "usage: sync-board --pub EP --service EP [--table T] [--client-id ID]\n"
    "                  [--server-key FILE --key FILE]\n"
    "  Shows table T (default public.bookings) live. Commands: edit KEY, done KEY, quit.\n"
    "  --server-key FILE --key FILE: CURVE, with the broker's public key file (its .pub)\n"
    "  and this client's secret key file (its .key, mode 0600); docs/security.md.\n";

/* Who edits one entity (only simple keys are shown), as one line of text. */
typedef struct presence_line {
    char key[64];
    char text[192];
} presence_line;

typedef struct board {
    sb_client *c;
    const char *table;
    presence_line presence[MAX_PRESENCE];
    size_t npresence;
    bool dirty;
} board;

typedef struct shown_row {
    char *key;
    char *json;
} shown_row;

typedef struct row_list {
    shown_row rows[MAX_SHOWN];
    size_t n;
} row_list;

static int collect(const sb_client_row *r, void *ud)
{
    row_list *l = ud;
    shown_row *s = &l->rows[l->n];
    if (!r->row || sb_client_json(r->row, r->row_len, &s->json) != SB_OK)
        return 0;
    s->key = strdup(r->key[0]);
    if (!s->key) {
        free(s->json);
        return 0;
    }
    return ++l->n == MAX_SHOWN;
}

/* Numeric keys in numeric order: shorter first, then by text. */
static int by_key(const void *a, const void *b)
{
    const shown_row *x = a, *y = b;
    size_t lx = strlen(x->key), ly = strlen(y->key);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x->key, y->key);
}

static void redraw(board *b)
{
    row_list *l = calloc(1, sizeof(*l));
    if (!l)
        return;
    size_t total = sb_client_foreach(b->c, b->table, collect, l);
    qsort(l->rows, l->n, sizeof(l->rows[0]), by_key);
    printf("\n=== %s: %zu rows%s (%s) ===\n", b->table, total,
           total > l->n ? ", first ones shown" : "", sb_client_online(b->c) ? "online" : "OFFLINE");
    for (size_t i = 0; i < l->n; i++) {
        printf("  %-8s %s\n", l->rows[i].key, l->rows[i].json);
        for (size_t p = 0; p < b->npresence; p++)
            if (strcmp(b->presence[p].key, l->rows[i].key) == 0)
                printf("           ^ %s\n", b->presence[p].text);
        free(l->rows[i].key);
        free(l->rows[i].json);
    }
    printf("[%s] edit KEY | done KEY | quit\n", sb_client_id(b->c));
    fflush(stdout);
    free(l);
    b->dirty = false;
}

static void on_event(const sb_client_event *ev, void *ud)
{
    board *b = ud;
    if (!ev->own || ev->op == SB_OP_TRUNCATE)
        printf("* %s %s%s%s\n", sb_client_op_name(ev->op), ev->nkey ? ev->key[0] : "",
               ev->origin ? " by " : "", ev->origin ? ev->origin : "");
    b->dirty = true;
}

static void on_reset(void *ud)
{
    ((board *)ud)->dirty = true;
}

static void on_online(bool online, void *ud)
{
    (void)online;
    ((board *)ud)->dirty = true;
}

static void on_presence(const char *table, const char *const *key, uint32_t nkey,
                        const sb_client_editor *editors, size_t n, void *ud)
{
    board *b = ud;
    if (nkey != 1 || strcmp(table, b->table) != 0)
        return;
    size_t i = 0;
    while (i < b->npresence && strcmp(b->presence[i].key, key[0]) != 0)
        i++;
    if (i == b->npresence) {
        if (i == MAX_PRESENCE)
            return;
        b->npresence++;
    }
    presence_line *p = &b->presence[i];
    snprintf(p->key, sizeof(p->key), "%s", key[0]);
    p->text[0] = '\0';
    for (size_t e = 0; e < n; e++) {
        size_t used = strlen(p->text);
        snprintf(p->text + used, sizeof(p->text) - used, "%s%s is %s row %s", e ? "; " : "",
                 editors[e].client, editors[e].state, key[0]);
    }
    if (n == 0) /* nobody left: drop the line */
        *p = b->presence[--b->npresence];
    b->dirty = true;
}

/* One command line from stdin; returns false on "quit". */
static bool command(board *b, char *line)
{
    char verb[16], key[64];
    line[strcspn(line, "\r\n")] = '\0';
    if (strcmp(line, "quit") == 0)
        return false;
    const char *k[1] = {key};
    bool two = sscanf(line, "%15s %63s", verb, key) == 2;
    int rc;
    if (two && strcmp(verb, "edit") == 0)
        rc = sb_client_begin_edit(b->c, b->table, k, 1);
    else if (two && strcmp(verb, "done") == 0)
        rc = sb_client_end_edit(b->c, b->table, k, 1);
    else
        rc = line[0] ? SB_ERR_INVAL : SB_OK;
    if (rc == SB_ERR_INVAL)
        fprintf(stderr, "sync-board: unknown command (edit KEY | done KEY | quit)\n");
    else if (rc != SB_OK)
        fprintf(stderr, "sync-board: %s\n", sb_strerror(rc));
    return true;
}

static void on_log(sb_log_level level, const char *msg, void *ud)
{
    (void)ud;
    if (level <= SB_LOG_WARN)
        fprintf(stderr, "sync-board: %s\n", msg);
}

int main(int argc, char **argv)
{
    tool_args a;
    int rc =
        tool_parse_args(argc, argv, ARG_PUB | ARG_SERVICE | ARG_TABLE | ARG_CLIENT_ID | ARG_CURVE,
                        ARG_PUB | ARG_SERVICE, usage, &a);
    if (rc == 0 && a.ntables > 1) {
        fprintf(stderr, "sync-board: one --table only\n%s", usage);
        rc = -1;
    }
    if (rc != 0) {
        tool_args_free(&a);
        return rc < 0 ? 1 : 0;
    }
    board b = {.table = a.ntables ? a.tables[0] : "public.bookings"};
    sb_client_config cfg = tool_client_config(&a);
    cfg.tables = &b.table;
    cfg.ntables = 1;
    cfg.cb = (sb_client_callbacks){on_event, on_reset, on_online, on_presence, on_log};
    cfg.ud = &b;
    if (tool_client_start(&cfg, "sync-board", &b.c) != SB_OK) {
        tool_args_free(&a);
        return 1;
    }
    tool_catch_signals();
    bool running = true, stdin_open = true;
    while (running && !tool_stopping()) {
        struct pollfd fds[3] = {{0, POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
        int zfd[2];
        size_t nz = 2;
        if (sb_client_fds(b.c, zfd, &nz) == SB_OK)
            fds[1].fd = zfd[0], fds[2].fd = zfd[1];
        fds[0].fd = stdin_open ? 0 : -1;
        poll(fds, 3, sb_client_timeout_ms(b.c));
        if (fds[0].revents) {
            char line[256];
            if (fgets(line, sizeof(line), stdin))
                running = command(&b, line);
            else
                stdin_open = false; /* keep showing the board without commands */
        }
        rc = sb_client_poll(b.c, 0);
        if (rc != SB_OK)
            fprintf(stderr, "sync-board: %s\n", sb_strerror(rc));
        if (b.dirty)
            redraw(&b);
    }
    sb_client_destroy(b.c);
    tool_args_free(&a);
    return 0;
}

/* fault.c - see fault.h. */
#include "fault.h"

#ifdef SB_FAULT_INJECTION
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 8

static struct {
    char name[32];
    long skip, left;
} points[MAX_POINTS];
static int npoints = -1; /* -1: SB_FAULTS not read yet */

static void parse(void)
{
    npoints = 0;
    const char *p = getenv("SB_FAULTS");
    while (p && *p && npoints < MAX_POINTS) {
        size_t len = strcspn(p, ":@,");
        if (len > 0 && len < sizeof points[0].name) {
            memcpy(points[npoints].name, p, len);
            points[npoints].name[len] = '\0';
            char *end = (char *)p + len;
            points[npoints].left = *end == ':' ? strtol(end + 1, &end, 10) : 1;
            points[npoints].skip = *end == '@' ? strtol(end + 1, NULL, 10) : 0;
            npoints++;
        }
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
}

bool sb_fault(const char *name)
{
    if (npoints < 0)
        parse();
    for (int i = 0; i < npoints; i++) {
        if (strcmp(points[i].name, name) != 0)
            continue;
        if (points[i].skip > 0) {
            points[i].skip--;
            return false;
        }
        if (points[i].left > 0) {
            points[i].left--;
            return true;
        }
    }
    return false;
}
#else
typedef int sb_fault_unused; /* ISO C: a translation unit is never empty */
#endif

/*
 * fault.h - test-only fault injection. SB_FAULT("name") is a constant false unless the broker
 * was built with -DSB_FAULT_INJECTION=ON (scripts/test's sanitizer build); there it is true
 * N times the point is reached, after passing it K times, when the environment has
 * SB_FAULTS="name:N@K,..." (N defaults to 1, K to 0). The integration tests use it to prove that
 * every path that cannot hand a change on ends in a new epoch rather than a silent loss. No
 * allocation, no state to free.
 */
#ifndef SB_FAULT_H
#define SB_FAULT_H

#include <stdbool.h>

#ifdef SB_FAULT_INJECTION
bool sb_fault(const char *name);
#define SB_FAULT(name) sb_fault(name)
#else
#define SB_FAULT(name) false
#endif

#endif /* SB_FAULT_H */

"""Fixtures for the fault suite. The PostgreSQL cluster, database and broker fixtures are the
integration tests' (tests/integration/conftest.py, loaded here under another module name);
this adds sb_fault_client processes and the record of each scenario's convergence times,
printed at the end of the run and written to <build>/faults-convergence.txt."""
import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "sb_integration_conftest", os.path.join(HERE, "..", "integration", "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)  # also puts tests/integration and tests/support on sys.path
sys.path.insert(0, HERE)

from faultkit import FaultClient  # noqa: E402

BUILD_DIR = _integration.BUILD_DIR
HOTEL_SQL = _integration.HOTEL_SQL
# source: both source plugins, for the scenarios where they differ (the database's faults).
pg, db, conn, broker, hotel, source = (_integration.pg, _integration.db, _integration.conn,
                                       _integration.broker, _integration.hotel,
                                       _integration.source)

CONVERGENCE = []  # (scenario, text): one line each in the summary


@pytest.fixture
def record():
    """record(scenario, text): one line of the convergence summary."""
    def add(scenario, text):
        CONVERGENCE.append((scenario, text))
        print(f"CONVERGENCE {scenario}: {text}")
    return add


def pytest_terminal_summary(terminalreporter):
    if not CONVERGENCE:
        return
    terminalreporter.section("fault suite: measured convergence")
    lines = [f"{scenario}: {text}" for scenario, text in CONVERGENCE]
    for line in lines:
        terminalreporter.write_line(line)
    try:
        with open(os.path.join(BUILD_DIR, "faults-convergence.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    except OSError:
        pass  # a read-only build dir: the terminal has it


@pytest.fixture
def fault_client(tmp_path):
    """Factory: fault_client(broker, name, tables=None, heartbeat_ms=None, nice=0) -> a
    running FaultClient (heartbeat_ms: what it is told; None: the library's default).
    At the end every client is stopped; an unclean exit or a sanitizer report fails."""
    binary = os.path.join(BUILD_DIR, "tests", "faults", "sb_fault_client")
    assert os.access(binary, os.X_OK), f"{binary} is missing: build the tests first"
    started = []

    def make(broker, name, tables=None, heartbeat_ms=None, nice=0):
        c = FaultClient(binary, broker, name, str(tmp_path), tables=tables,
                        heartbeat_ms=heartbeat_ms, nice=nice)
        started.append(c)
        return c

    yield make
    problems = [p for p in (c.stop() for c in started) if p]
    problems += [r for r in (c.sanitizer_report() for c in started) if r]
    if problems:
        pytest.fail("sb_fault_client:\n" + "\n----\n".join(problems))

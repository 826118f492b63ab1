"""Every path on which the broker cannot hand a change on either keeps the source's position
(the change is read again) or starts a new epoch (clients resynchronise), and says which in
the log. The broker's own failures are injected at named points (broker/fault.h: the
sanitizer build of scripts/test has them); a tracked table whose primary key is altered is a
real one. A Replica following docs/protocol.md must end up holding exactly the database."""
import os
import re

import pytest

from conftest import BUILD_DIR, wait_until
from sbpeer import Replica, typed_rows
from sbwriter import q

BOOKINGS = "public.bookings"


def fault_injection_built():
    try:
        with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
            return "SB_FAULT_INJECTION:BOOL=ON" in f.read()
    except OSError:
        return False


needs_faults = pytest.mark.skipif(not fault_injection_built(),
                                  reason="the broker was built without -DSB_FAULT_INJECTION=ON")


def bookings(conn):
    return lambda: typed_rows(conn, BOOKINGS)


def epochs(log):
    return re.findall(r"new epoch (\w+) \(was \w+\): ([^\n]*)", log)


@needs_faults
@pytest.mark.parametrize("fault, says", [
    ("core.queue", "a change of public.bookings could not be queued"),
    ("core.encode", "out of memory encoding an event of public.bookings"),
    ("core.publish,core.retain", "a message was neither published nor retained"),
])
def test_a_change_the_core_cannot_hand_on_starts_one_new_epoch(broker, hotel, conn, monkeypatch,
                                                               fault, says):
    monkeypatch.setenv("SB_FAULTS", fault)
    b = broker(hotel, [BOOKINGS])
    replica = Replica(b.pub, b.service, [BOOKINGS])
    replica.start()
    q(conn, "INSERT INTO bookings (id, guest) VALUES (1, 'ann')")  # meets the fault
    replica.wait_equal(bookings(conn))
    q(conn, "INSERT INTO bookings (id, guest) VALUES (2, 'bob')")  # the stream goes on
    replica.wait_equal(bookings(conn))
    reasons = [reason for _, reason in epochs(b.log)]
    assert len(reasons) == 1 and reasons[0].startswith(says), reasons
    assert reasons[0].endswith("starting a new epoch so that nothing is lost; clients resynchronise")
    assert replica.resyncs == 1
    replica.close()
    b.stop()


@needs_faults
def test_a_message_not_published_but_retained_is_fetched_with_since(broker, hotel, conn,
                                                                    monkeypatch):
    monkeypatch.setenv("SB_FAULTS", "core.publish:1@1")
    b = broker(hotel, [BOOKINGS])
    replica = Replica(b.pub, b.service, [BOOKINGS])
    replica.start()
    q(conn, "INSERT INTO bookings (id, guest) VALUES (1, 'ann')")  # starts tseq tracking
    replica.wait_equal(bookings(conn))
    q(conn, "INSERT INTO bookings (id, guest) VALUES (2, 'bob')")  # not published
    q(conn, "INSERT INTO bookings (id, guest) VALUES (3, 'cy')")   # shows the gap
    replica.wait_equal(bookings(conn))
    assert "clients see the gap and fetch it with since" in b.log
    assert epochs(b.log) == [] and replica.resyncs == 0
    assert replica.gaps, "the unpublished event left no gap: was it published after all?"
    replica.close()
    b.stop()


def test_altered_primary_key_holds_the_position_and_says_what_to_run(broker, source, hotel,
                                                                      conn):
    """After ALTER TABLE ... PRIMARY KEY and track(), change rows carry the new key shape: the
    running broker must neither skip them nor guess, and a restarted broker must refuse the
    table until it is tracked again."""
    b = broker(hotel, [BOOKINGS], source=source)
    replica = Replica(b.pub, b.service, [BOOKINGS])
    replica.start()
    q(conn, "INSERT INTO bookings (id, guest) VALUES (1, 'ann')")
    replica.wait_equal(bookings(conn))
    q(conn, """ALTER TABLE bookings DROP CONSTRAINT bookings_pkey;
               ALTER TABLE bookings ADD PRIMARY KEY (id, guest)""")
    q(conn, "SELECT syncbroker.track('public.bookings')")
    q(conn, "INSERT INTO bookings (id, guest) VALUES (2, 'bob')")
    line = wait_until(lambda: next((ln for ln in b.log.splitlines()
                                    if "change rows cannot be read" in ln), None),
                      30, "the broker to refuse the new key shape")
    assert "SELECT syncbroker.track('public.bookings')" in line and "nothing is lost" in line
    assert epochs(b.log) == []
    b.stop()

    # Restarted on a key that track() has not seen: refused at start, naming what to run.
    q(conn, """ALTER TABLE bookings DROP CONSTRAINT bookings_pkey;
               ALTER TABLE bookings ADD PRIMARY KEY (id)""")
    with pytest.raises(AssertionError, match="exited"):
        broker(hotel, [BOOKINGS], source=source)
    log = open(os.path.join(os.path.dirname(b.config), "..", "broker1", "syncbroker.log")).read()
    assert ("the primary key of public.bookings is now {id} but it was tracked as {id,guest}; "
            "run: SELECT syncbroker.track('public.bookings');") in log
    replica.close()

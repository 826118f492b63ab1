"""A Python peer for the Syncbroker wire protocol (docs/protocol.md): a SUB helper, a
request helper for the service, and a Replica that follows the client algorithm. Also reads
a table from PostgreSQL in the same typed form the broker publishes, for comparisons.
Plain by default; the socket helpers and Replica take curve= (use_curve, curve_from_files) to
be a CURVE client (docs/security.md)."""
import time

import msgpack
import zmq

CTX = zmq.Context.instance()
INT_TYPES = {"smallint", "integer", "bigint", "oid"}
FLOAT_TYPES = {"real", "double precision"}


def unpack(frame):
    return msgpack.unpackb(frame, raw=False, strict_map_key=False)


def is_heartbeat(topic):
    """"@hb", or with CURVE a client's own heartbeat topic "@hb/<name>/" (docs/protocol.md)."""
    return topic == "@hb" or topic.startswith("@hb/")


def use_curve(sock, curve):
    """Makes sock a CURVE client when curve is given: a dict of Z85 keys, "server" (the
    broker's public key), "public" and "secret" (the client's pair)."""
    if curve:
        sock.curve_serverkey = curve["server"]
        sock.curve_publickey = curve["public"]
        sock.curve_secretkey = curve["secret"]


def request(endpoint, body, timeout=5.0, socket_type=zmq.REQ, curve=None):
    """Sends one request (a dict is packed, bytes go as they are) and returns the decoded reply
    frames (a frame that is not msgpack comes back as bytes). Raises TimeoutError. curve: see
    use_curve."""
    sock = CTX.socket(socket_type)
    sock.setsockopt(zmq.LINGER, 0)
    use_curve(sock, curve)
    sock.connect(endpoint)
    try:
        payload = body if isinstance(body, bytes) else msgpack.packb(body, use_bin_type=True)
        if socket_type == zmq.DEALER:
            sock.send_multipart([b"", payload])  # the empty delimiter REQ would add
        else:
            sock.send(payload)
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply from {endpoint} within {timeout}s")
        frames = sock.recv_multipart()
        if socket_type == zmq.DEALER:
            assert frames[0] == b"", f"DEALER reply lacks the delimiter: {frames[:2]}"
            frames = frames[1:]
        out = []
        for frame in frames:
            try:
                out.append(unpack(frame))
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                out.append(frame)
        return out
    finally:
        sock.close()


def key_tuple(key):
    return tuple(key) if isinstance(key, (list, tuple)) else (key,)


def read_key_file(path):
    """The key of a key file (docs/security.md, "Key files"): its one line that is neither
    blank nor a '#' comment, as Z85 bytes."""
    with open(path, "rb") as f:
        keys = [line.strip() for line in f if line.strip() and not line.startswith(b"#")]
    assert len(keys) == 1 and len(keys[0]) == 40, f"{path}: not one Z85 key: {keys!r}"
    return keys[0]


def curve_from_files(server_pub_path, secret_key_path):
    """The curve= keys (see use_curve) from the broker's .pub and a client's .key, as
    sync-keygen writes them; the public key is derived from the secret one, as libsyncclient
    does."""
    secret = read_key_file(secret_key_path)
    return {"server": read_key_file(server_pub_path), "public": zmq.curve_public(secret),
            "secret": secret}


class Subscriber:
    """SUB socket: data topics first, '@hb' last (its first heartbeat proves the rest live)."""

    def __init__(self, endpoint, topics=("",), curve=None):
        self.sock = CTX.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        use_curve(self.sock, curve)
        self.sock.connect(endpoint)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sock.setsockopt(zmq.SUBSCRIBE, b"@hb")
        self.pending = []  # non-heartbeat messages received while waiting for a heartbeat

    def close(self):
        self.sock.close()

    def recv(self, timeout):
        """(topic, body) of the next message, or raises TimeoutError."""
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no message within {timeout}s")
        frames = self.sock.recv_multipart()
        assert len(frames) == 2, f"event with {len(frames)} frames"
        return frames[0].decode(), unpack(frames[1])

    def wait_heartbeat(self, timeout=10.0):
        """Returns the first heartbeat body; other messages meanwhile go to self.pending."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no heartbeat within {timeout}s")
            topic, body = self.recv(left)
            if is_heartbeat(topic):
                return body
            self.pending.append((topic, body))

    def collect_until(self, pred, timeout=10.0, heartbeats=False):
        """Receives messages (heartbeats only if asked) until pred(messages) is true; returns
        them. Messages in self.pending come first. AssertionError with what came on timeout."""
        got, self.pending = list(self.pending), []
        if not heartbeats:
            got = [m for m in got if not is_heartbeat(m[0])]
        deadline = time.monotonic() + timeout
        while not pred(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not met within {timeout}s; received {got!r}")
            try:
                topic, body = self.recv(min(left, 0.2))
            except TimeoutError:
                continue
            if not is_heartbeat(topic) or heartbeats:
                got.append((topic, body))
        return got


class Replica:
    """Follows docs/protocol.md: subscribe, first heartbeat, snapshot, buffered events with
    seq > snapshot seq (version-checked), then the stream; on a tseq gap or a new epoch,
    `since` (followed from `upto` while a reply says `more`), and a new snapshot if that
    answers resync. rows: {(table, key tuple): row}."""

    def __init__(self, pub, service, tables, curve=None):
        self.service = service
        self.curve = curve
        self.tables = list(tables)
        self.sub = Subscriber(pub, [f"{t}/" for t in self.tables], curve=curve)
        self.rows = {}
        self.versions = {}
        self.epoch = None
        self.seq = 0          # newest seq applied (or the snapshot's)
        self.tseq = {}
        self.known_at = {}    # table -> a seq up to which its events are all applied
        self.gaps = []        # (table, expected tseq, got): each one forced a since/snapshot
        self.resyncs = 0      # snapshots taken after the first
        self.sinces = 0       # since requests sent (a capped reply's continuations count)

    def close(self):
        self.sub.close()

    def start(self, timeout=10.0):
        self.sub.wait_heartbeat(timeout)
        head = self.snapshot(timeout)
        buffered, self.sub.pending = self.sub.pending, []
        for _topic, ev in buffered:
            self.apply(ev)
        return head

    def snapshot(self, timeout=10.0):
        # "unavailable": the broker's source is reconnecting; ask again, as clients do.
        deadline = time.monotonic() + timeout
        while True:
            frames = request(self.service, {"op": "snapshot", "tables": self.tables},
                             timeout=timeout, curve=self.curve)
            head = frames[0]
            if head.get("error") != "unavailable" or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # a retry back-off, as a client's; nothing signals "ready"
        assert isinstance(head, dict) and "error" not in head, head
        self.rows, self.versions = {}, {}
        # tseq tracking starts at the snapshot's (brokers before that field: at the next event)
        self.tseq = {t: v for t, v in head.get("tseq", {}).items() if t in self.tables}
        self.epoch, self.seq = head["epoch"], head["seq"]
        self.known_at = {t: self.seq for t in self.tables}
        count = 0
        for frame in frames[1:]:
            for item in frame:
                k = (item["table"], key_tuple(item["key"]))
                self.rows[k] = item["row"]
                self.versions[k] = item["version"]
                count += 1
        assert count == head["rows"], f"snapshot said {head['rows']} rows, sent {count}"
        return head

    def resync(self, ev):
        """Catch up after a gap: `since`, else (new epoch, buffer gone, a reply that cannot be
        the broker's) a snapshot."""
        if ev["epoch"] == self.epoch and self.since():
            return
        self.resyncs += 1
        self.snapshot()

    def since(self):
        """Replays what came after the seq up to which every followed table is known complete
        (not self.seq: events of one table may have been lost before a later event of another
        was applied), following a capped reply's `more` from its `upto` until a complete one.
        Replayed events go by version, so what was applied already changes nothing. False when
        the broker refuses (resync, future) or a `more` contradicts itself (upto missing, not
        advancing, or not where the messages end): a snapshot must follow."""
        asked = min((self.known_at.get(t, 0) for t in self.tables), default=self.seq)
        while True:
            frames = request(self.service, {"op": "since", "epoch": self.epoch, "seq": asked},
                             curve=self.curve)
            self.sinces += 1
            head = frames[0]
            if not isinstance(head, dict) or "error" in head:
                return False
            for missed in frames[1:]:
                if missed.get("table") in self.tables and "op" in missed:
                    self._apply_change(missed, replayed=True)
            if not head.get("more"):
                last = head.get("seq", self.seq)
                self.seq = max(self.seq, last)
                self.known_at = {t: self.seq for t in self.tables}
                return True
            upto = head.get("upto")
            if (not isinstance(upto, int) or upto <= asked or len(frames) < 2
                    or frames[-1].get("seq") != upto):
                return False
            asked = upto  # every message up to upto was seen

    def apply(self, ev):
        if "op" not in ev or ev.get("table") not in self.tables:
            return  # presence, or a table we did not ask for
        if ev["epoch"] == self.epoch and ev["seq"] <= self.seq:
            return  # already in the snapshot or applied
        last = self.tseq.get(ev["table"])
        if ev["epoch"] != self.epoch or (last is not None and ev["tseq"] != last + 1):
            if ev["epoch"] == self.epoch:
                self.gaps.append((ev["table"], last + 1, ev["tseq"]))
            self.resync(ev)
            if ev["epoch"] != self.epoch or ev["seq"] <= self.seq:
                return
        self._apply_change(ev)

    def _apply_change(self, ev, replayed=False):
        if ev["seq"] <= self.seq and not replayed:
            return
        self.seq = max(self.seq, ev["seq"])
        table = ev["table"]
        self.tseq[table] = max(self.tseq.get(table, 0), ev["tseq"])
        if not replayed:
            self.known_at[table] = ev["seq"]
        if ev["op"] == "truncate":
            for k in [k for k in self.versions if k[0] == table]:
                self.rows.pop(k, None)
                del self.versions[k]
            return
        k = (table, key_tuple(ev["key"]))
        if ev["version"] <= self.versions.get(k, 0):
            return
        self.versions[k] = ev["version"]
        if ev["op"] == "delete":
            self.rows.pop(k, None)
        else:
            self.rows[k] = ev["row"]

    def check_heartbeat(self, hb):
        """A heartbeat names each table's last tseq: one ahead of ours means the last events
        of a burst were lost, which no later event may reveal (the stream may stay quiet)."""
        for table, last in self.tseq.items():
            if hb["tseq"].get(table, 0) > last:
                self.gaps.append((table, last + 1, hb["tseq"][table]))
                self.resync(hb)
                return
        for table in self.tseq:  # none is behind: each is complete up to the heartbeat
            self.known_at[table] = max(self.known_at.get(table, 0), hb["seq"])

    def pump(self, timeout=0.1):
        """Applies whatever arrives within timeout; returns how many messages came."""
        n = 0
        try:
            while True:
                topic, ev = self.sub.recv(timeout if n == 0 else 0)
                n += 1
                if not is_heartbeat(topic):
                    self.apply(ev)
                elif ev["epoch"] != self.epoch:
                    self.resyncs += 1  # a new broker run: nothing we hold is comparable
                    self.snapshot()
                else:
                    self.check_heartbeat(ev)
        except TimeoutError:
            return n

    def wait_equal(self, expected_fn, timeout=20.0):
        """Pumps events until self.rows == expected_fn() (re-read whenever the stream is idle)."""
        deadline = time.monotonic() + timeout
        expected = expected_fn()
        while self.rows != expected:
            if time.monotonic() > deadline:
                wrong = {k: (self.rows.get(k), v) for k, v in expected.items()
                         if self.rows.get(k) != v}
                extra = [k for k in self.rows if k not in expected]
                raise AssertionError(
                    f"replica differs from the database after {timeout}s: "
                    f"{len(wrong)} wrong/missing, e.g. {list(wrong.items())[:3]}; "
                    f"{len(extra)} extra, e.g. {extra[:3]}")
            self.pump(0.05)
            expected = expected_fn()


def typed_rows(conn, table):
    """{(table, key tuple): row} as the broker publishes them: ints, floats, bools, NULL as
    None, everything else in PostgreSQL's text form; the key as text in key order."""
    with conn.cursor() as cur:
        cur.execute("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""", (table,))
        cols = cur.fetchall()
        cur.execute("SELECT pk_cols FROM syncbroker.tracked WHERE relid = %s::regclass", (table,))
        pk = cur.fetchone()[0]
        exprs = []
        for name, typ in cols:
            ident = '"' + name.replace('"', '""') + '"'
            if typ in INT_TYPES or typ in FLOAT_TYPES or typ == "boolean":
                exprs.append(ident)
            else:
                exprs.append(f"{ident}::text")
        keys = ['"' + c.replace('"', '""') + '"::text' for c in pk]
        cur.execute(f"SELECT {', '.join(keys)}, {', '.join(exprs)} FROM {table}")
        out = {}
        for rec in cur.fetchall():
            key = tuple(rec[:len(keys)])
            out[(table, key)] = {name: rec[len(keys) + i] for i, (name, _) in enumerate(cols)}
        return out


def write_version(conn, sql, args, table, key):
    """Runs one write (an autocommit connection's statement) in a transaction that also reads
    the version its trigger recorded for (table, key), before the commit: once committed, the
    broker may read and prune that change at any moment, and the entity view forgets it."""
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            cur.execute(sql, args)
            cur.execute("SELECT max(version) FROM syncbroker.change"
                        " WHERE relid = %s::regclass AND pk = %s", (table, list(key)))
            version = cur.fetchone()[0]
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    assert version is not None, f"{sql} recorded no change of {table} {key}"
    return version

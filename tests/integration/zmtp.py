"""A raw ZMTP 3.0 peer over TCP (NULL mechanism) for the abuse tests: unlike a libzmq socket
it writes frames as they are made, so it can send what libzmq would hold back (an unfinished
message of any size) and flood at a rate Python's per-message libzmq calls cannot reach."""
import socket
import struct


def _recv_exact(s, n, what):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"the broker closed the connection during {what}")
        data += chunk
    return data


def connect(endpoint, socket_type=b"DEALER"):
    """A connected TCP socket past the greeting and READY handshake, as socket_type. It waits
    for the broker's READY, as libzmq does: the broker's ZAP handler decides first, and a
    message sent before that is a protocol error to libzmq, which drops the connection."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32)
    ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    s.sendall(bytes([0x04, len(ready)]) + ready)
    _recv_exact(s, 64, "the greeting")
    flags = _recv_exact(s, 1, "the handshake")[0]
    size = (struct.unpack(">Q", _recv_exact(s, 8, "the handshake"))[0] if flags & 0x02
            else _recv_exact(s, 1, "the handshake")[0])
    command = _recv_exact(s, size, "the handshake")
    if not flags & 0x04 or not command.startswith(b"\x05READY"):
        raise ConnectionError(f"the broker answered the handshake with {command[:40]!r}")
    return s


def frame(data, more=False):
    """One message frame (long form above 255 bytes)."""
    if len(data) < 256:
        return bytes([0x01 if more else 0x00, len(data)]) + data
    return bytes([0x03 if more else 0x02]) + struct.pack(">Q", len(data)) + data


class Counter:
    """Counts whole messages in the bytes a peer receives after connect() (commands, which
    are not messages, are skipped)."""

    def __init__(self):
        self.buf = b""
        self.messages = 0

    def feed(self, data):
        self.buf += data
        i = 0
        while True:
            if len(self.buf) - i < 2:
                break
            flags = self.buf[i]
            long = flags & 0x02
            head = 9 if long else 2
            if len(self.buf) - i < head:
                break
            size = struct.unpack(">Q", self.buf[i + 1:i + 9])[0] if long else self.buf[i + 1]
            if len(self.buf) - i < head + size:
                break
            if not flags & 0x04 and not flags & 0x01:  # the last frame of a message
                self.messages += 1
            i += head + size
        self.buf = self.buf[i:]

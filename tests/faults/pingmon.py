"""Pings a Syncbroker service from a process of its own, so that what it measures is the
broker (and the machine), not the test's threads: one line per ping, "sent" just before it
goes out, then its round trip in seconds, or "inf" after 2 s without a reply (the socket is
then replaced). Runs until stdin closes. Usage: pingmon.py ENDPOINT INTERVAL_S"""
import sys
import threading
import time

import msgpack
import zmq


def main():
    endpoint, every = sys.argv[1], float(sys.argv[2])
    halt = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), halt.set()), daemon=True).start()
    ctx = zmq.Context()

    def connect():
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        return sock
    sock = connect()
    ping = msgpack.packb({"op": "ping"})
    while not halt.wait(every):
        print("sent", flush=True)
        t0 = time.monotonic()
        sock.send(ping)
        if sock.poll(2000):
            sock.recv()
            print(time.monotonic() - t0, flush=True)
        else:
            print("inf", flush=True)
            sock.close()
            sock = connect()
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main()

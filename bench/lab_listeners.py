"""Benchmark targets: listening sockets on loopback, served from their own process.

The kernel completes each handshake on a listening socket, so a plain ``listen()`` is an open port;
this process only accepts and closes, so accept queues never fill between runs. It runs apart from
the scanner so the scanner keeps its core to itself.

Run: ``python -m bench.lab_listeners PLAN.json`` (``{"address": [port, ...]}``); it prints
``ready`` once every socket listens and serves until its standard input closes.
"""

import json
import random
import selectors
import socket
import sys
from pathlib import Path


def plan_live_hosts(
    addresses: list[str], ports: list[int], *, fraction: float, seed: int
) -> dict[str, list[int]]:
    """Pick ``fraction`` of the addresses as live, each with 1 to 3 of ``ports`` open."""
    rng = random.Random(seed)  # a reproducible workload, not a secret
    live = rng.sample(addresses, max(1, round(len(addresses) * fraction)))
    return {address: sorted(rng.sample(ports, rng.randint(1, 3))) for address in live}


def serve(plan: dict[str, list[int]]) -> None:
    selector = selectors.DefaultSelector()
    for address, ports in plan.items():
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(4096)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ, data="stdin")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "stdin":
                if not sys.stdin.readline():
                    return
                continue
            server = key.fileobj
            assert isinstance(server, socket.socket)
            try:
                while True:
                    conn, _ = server.accept()
                    conn.close()
            except (BlockingIOError, ConnectionAbortedError):
                continue


def main() -> None:
    serve(json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()

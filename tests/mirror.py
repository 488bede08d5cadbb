"""A mirror port made of namespaces: a veth pair whose one end (in a namespace of its own) a
sensor listens on while recorded traffic is replayed onto the other with Debian's ``tcpreplay``.

Used by the live sensor's tests and by ``bench/passive.py``. Both namespaces are made here and
deleted on exit (the veth pair goes with them); neither end has an address and IPv6 is off, so
the kernel itself sends nothing on them. Needs root.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_WAIT_S = 120.0  # a loaded machine starts the CLI slowly; not a timing assert


@dataclass(frozen=True, slots=True)
class Mirror:
    sensor_namespace: str
    sensor_interface: str
    replay_namespace: str
    replay_interface: str

    def counters(self, direction: str) -> tuple[int, int]:
        """(packets, bytes) the sensor's interface counted in ``direction`` (rx or tx)."""
        base = f"/sys/class/net/{self.sensor_interface}/statistics/{direction}"
        values = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.sensor_namespace,
                "cat",
                f"{base}_packets",
                f"{base}_bytes",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        return int(values[0]), int(values[1])

    def replay(self, captures: Sequence[Path], *, loops: int = 1) -> int:
        """Replay ``captures`` at top speed onto the mirror; the packets tcpreplay sent."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.replay_namespace, "tcpreplay", "--topspeed"]
            + [f"--loop={loops}", "-i", self.replay_interface]
            + [str(c) for c in captures],
            check=True,
            capture_output=True,
            text=True,
        )
        for line in result.stdout.splitlines():
            if "Successful packets:" in line:
                return int(line.split(":")[1])
        raise AssertionError(f"tcpreplay said nothing of what it sent: {result.stdout}")


def require_mirror_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("namespaces and raw sockets need root")
    if shutil.which("tcpreplay") is None:
        raise FileNotFoundError("tcpreplay is missing: apt-get install tcpreplay (.ci/run does)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def mirror_link() -> Iterator[Mirror]:
    tag = uuid.uuid4().hex[:6]
    mirror = Mirror(f"hp-s{tag}", f"hp-s{tag}", f"hp-r{tag}", f"hp-r{tag}")
    made: list[str] = []
    try:
        for namespace in (mirror.sensor_namespace, mirror.replay_namespace):
            _ip("netns", "add", namespace)
            made.append(namespace)
            for scope in ("all", "default"):
                _ip("netns", "exec", namespace, "sysctl", "-qw",
                    f"net.ipv6.conf.{scope}.disable_ipv6=1")  # fmt: skip
        _ip("link", "add", mirror.sensor_interface, "netns", mirror.sensor_namespace,
            "type", "veth", "peer", "name", mirror.replay_interface,
            "netns", mirror.replay_namespace)  # fmt: skip
        _ip("-n", mirror.sensor_namespace, "link", "set", mirror.sensor_interface, "up")
        _ip("-n", mirror.replay_namespace, "link", "set", mirror.replay_interface, "up")
        yield mirror
    finally:
        for namespace in made:
            subprocess.run(["ip", "netns", "delete", namespace], check=False, capture_output=True)


@dataclass(slots=True)
class Listening:
    process: "subprocess.Popen[str]"
    stdout: Path
    stderr: Path

    def stop(self) -> tuple[str, str]:
        """SIGTERM, then the (stdout, stderr) of the finished command."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=READY_WAIT_S)
        return self.stdout.read_text(), self.stderr.read_text()


@contextmanager
def listening(
    mirror: Mirror, env: dict[str, str], workdir: Path, *extra: str
) -> Iterator[Listening]:
    """``cybermission listen`` on the sensor end, returned once its socket is bound."""
    command = [str(Path(".venv/bin/cybermission").resolve()), "listen", mirror.sensor_interface]
    stdout, stderr = workdir / "listen.out", workdir / "listen.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            ["ip", "netns", "exec", mirror.sensor_namespace, *command, *extra],
            stdout=out,
            stderr=err,
            env={**os.environ, **env},
            text=True,
        )
    running = Listening(process, stdout, stderr)
    try:
        deadline = time.monotonic() + READY_WAIT_S
        while not _has_packet_socket(mirror.sensor_namespace):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"listen did not start: {stderr.read_text()}")
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _has_packet_socket(namespace: str) -> bool:
    """Whether a packet socket is bound for every protocol (ETH_P_ALL) in ``namespace``: the
    sensor opens it with protocol 0 and binds it once its filter is attached."""
    table = subprocess.run(
        ["ip", "netns", "exec", namespace, "cat", "/proc/net/packet"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return any(row.split()[3] == "0003" for row in table.strip().splitlines()[1:])

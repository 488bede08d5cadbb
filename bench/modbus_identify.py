"""Benchmark: identify 1,024 simulated Modbus devices (regular objects) vs nmap's modbus-discover.

    python -m bench.modbus_identify [--devices 1024] [--base 127.20.128.0] [--parallel 50]
                                    [--runs 3] [--no-nmap]

The simulators are real pymodbus servers (``scanners.lab.modbus_devices.LabDevice``), one per
address, all in one child process so that they do not share the probe's event loop or core. Each has
its own identity (regular objects 0x00-0x06, product code and model unique per device). Our side
runs :class:`scanners.modbus.ModbusProbe` through the guarded ``Connector``, one connection per
device, a fixed pool of ``--parallel`` workers. The peer is ``nmap -n -Pn -sT -p 502 --script
modbus-discover`` on the same addresses (basic objects only, several connections per device).
Loopback only; prints medians and the ratio nmap/ours (> 1 means we are faster).
"""

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import ProbeTarget, RequestLedger, Transport
from scanners.lab.modbus_devices import ANY_UNIT, LabDevice
from scanners.modbus import ModbusProbe


def _addresses(base: str, count: int) -> list[str]:
    first = ipaddress.IPv4Address(base)
    addresses = [str(first + i) for i in range(count)]
    if not all(ipaddress.IPv4Address(a).is_loopback for a in addresses):
        raise SystemExit("the benchmark only runs on 127.0.0.0/8")
    return addresses


def _bench_device(index: int, address: str) -> LabDevice:
    objects = {
        0x00: "Bench Automation",
        0x01: f"BA-{index:04d}",
        0x02: f"v{1 + index % 7}.{index % 100:02d}",
        0x03: "http://bench.invalid",
        0x04: "Bench Controller",
        0x05: f"BC-{index:04d}",
        0x06: f"LINE_{index:04d}",
    }
    return LabDevice(
        name=f"bench-{index:04d}",
        address=address,
        port=502,
        protocol="modbus",
        identity={"product_code": objects[0x01], "model": objects[0x05]},
        units={ANY_UNIT: objects},
    )


async def _serve(base: str, count: int) -> None:
    devices = [_bench_device(i, a) for i, a in enumerate(_addresses(base, count))]
    for device in devices:
        await device.start()
    # 1,024 pymodbus servers hold ~2 GB of objects: a full collection of them stopped every
    # device for ~1.2 s, in about 2 runs of 5 of either tool (issue 12: "swept" hosts came at
    # 0.1 s, then none until 1.3 s). Frozen, the collector never walks them; 8 runs of 8 clean.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for device in devices:
        await device.stop()


async def _identify_all(addresses: Sequence[str], parallel: int) -> tuple[float, int]:
    connector = Connector(ScopeGuard([ScopeRule.build("bench", ["127.0.0.0/8"])]))
    probe = ModbusProbe()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for address in addresses:
        queue.put_nowait(address)
    identified = 0

    async def worker() -> None:
        nonlocal identified
        while not queue.empty():
            address = queue.get_nowait()
            target = ProbeTarget(
                address, 502, Transport.TCP, connector, RequestLedger(probe.name, probe.manifest)
            )
            observation = await probe.observe(target, timeout_s=5.0)
            if observation is not None and "user_application_name" in observation.facts:
                identified += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    elapsed = time.perf_counter() - started
    print(f"  probe process CPU {time.process_time() - cpu:.3f} s of {elapsed:.3f} s wall")
    return elapsed, identified


def _nmap(addresses: Sequence[str]) -> tuple[float, int]:
    nmap = shutil.which("nmap")
    if nmap is None:
        raise SystemExit("nmap is missing: apt-get install nmap, or pass --no-nmap")
    command = [nmap, "-n", "-Pn", "-sT", "-p", "502", "--script", "modbus-discover", "-iL", "-"]
    started = time.perf_counter()
    result = subprocess.run(
        command, input="\n".join(addresses), capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - started
    return elapsed, result.stdout.count("Device identification:")


@contextlib.contextmanager
def simulators(base: str, devices: int) -> Iterator[None]:
    """``devices`` lab Modbus devices from ``base`` on, served by a child process (``serve``)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.modbus_identify", "serve", "--base", base,
         "--devices", str(devices)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the simulators did not start")
        yield
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.modbus_identify")
    parser.add_argument("mode", nargs="?", choices=["bench", "serve"], default="bench")
    parser.add_argument("--devices", type=int, default=1024)
    parser.add_argument("--base", default="127.20.128.0")
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-nmap", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        asyncio.run(_serve(args.base, args.devices))
        return 0
    addresses = _addresses(args.base, args.devices)
    with simulators(args.base, args.devices):
        # One untimed pass: the simulators' first connections pay pymodbus's lazy set-up.
        asyncio.run(_identify_all(addresses, args.parallel))
        ours: list[float] = []
        peer: list[float] = []
        for run in range(args.runs):
            elapsed, identified = asyncio.run(_identify_all(addresses, args.parallel))
            ours.append(elapsed)
            print(f"run {run + 1}: cybermission {elapsed:.3f} s, {identified} identified (regular)")
            if not args.no_nmap:
                elapsed, identified = _nmap(addresses)
                peer.append(elapsed)
                print(f"run {run + 1}: nmap modbus-discover {elapsed:.3f} s, {identified} (basic)")
    ours_median = statistics.median(ours)
    print(f"cybermission median {ours_median:.3f} s ({len(addresses) / ours_median:.0f} devices/s)")
    if peer:
        peer_median = statistics.median(peer)
        ratio = peer_median / ours_median
        print(f"nmap median {peer_median:.3f} s; ratio nmap/cybermission {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

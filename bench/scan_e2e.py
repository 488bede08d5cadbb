"""Benchmark: the real ``cybermission scan`` command end to end vs nmap's modbus-discover.

    python -m bench.scan_e2e [--devices 1024] [--base 127.20.128.0] [--runs 3]
                             [--profiles lab,safe] [--loads idle,stress] [--memory]
    python -m bench.scan_e2e --memory-only

Workload 3 of ../shared/BENCHMARKS.md through the product path a user runs: the command
``cybermission scan <base>/22 --ports 502 --format json`` in a fresh process with a fresh SQLite
store (migrations, sweep, probes, inventory, rules, advisories, report), timed from outside, beside
``nmap -n -Pn -sT -p 502 --script modbus-discover`` on the same addresses, in the same run, turn
about. The simulators are the real pymodbus servers of ``bench.modbus_identify`` in their own
process. Each pacing profile is measured idle and under ``stress-ng --cpu 2`` (two CPU hogs on the
2-core machine). A device counts as identified when the JSON report gives its asset a vendor and a
model (ours) or when nmap prints its device identification (the peer).

``--memory`` also measures the command's peak RSS over an empty /20 and an empty /16 (every port
answers RST on loopback; TCP only): memory must stay flat as the range grows.

Loopback only; prints one line per run and a summary with the median ratio ours/nmap.
"""

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cpu_hogs import cpu_hogs
from bench.modbus_identify import simulators

MEMORY_RANGES = ("127.22.0.0/20", "127.23.0.0/16")
# Addresses in error texts, left out so that one kind of error counts as one kind.
_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+(?::\d+)?")


@dataclass(frozen=True)
class Timed:
    seconds: float
    identified: int
    peak_rss_mib: float
    status: str = ""
    cpu_s: float = 0.0  # user + system of the finished process (wait4)


def _network(base: str, devices: int) -> str:
    prefix = 32 - (devices - 1).bit_length()
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=True)
    if not network.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
        raise SystemExit("the benchmark only runs on 127.0.0.0/8")
    return str(network)


def _cybermission() -> str:
    found = Path(sys.executable).with_name("cybermission")
    return str(found) if found.exists() else "cybermission"


def _run_timed(command: Sequence[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) of the finished child, and its stdout."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if process.returncode not in (0, 1):
        raise SystemExit(f"{command[0]} exited {process.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def _scan_env(profile: str, store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CYBERMISSION_DATABASE_URL": f"sqlite:///{store}",
            "CYBERMISSION_PACING__PROFILE": profile,
            "CYBERMISSION_LOG_LEVEL": "WARNING",
        }
    )
    # An installed command has its bytecode caches (pip compiles them); a session environment
    # that forbids writing them made every run compile what it imports (4% of a run's samples).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_cybermission(
    network: str, profile: str, *, udp_ports: str | None = None, advisories: Path | None = None
) -> Timed:
    with tempfile.TemporaryDirectory(prefix="cm-e2e-") as folder:
        env = _scan_env(profile, Path(folder) / "cybermission.db")
        env["XDG_CACHE_HOME"] = str(Path(folder) / "cache")  # the advisory index, per run
        # A store other than the default must exist: created before the timed scan.
        subprocess.run([_cybermission(), "db", "upgrade"], env=env, check=True, capture_output=True)
        if advisories is not None:
            # What a user's store holds: the advisories imported (untimed), as README says.
            subprocess.run(
                [_cybermission(), "advisories", "import", str(advisories)],
                env=env,
                check=True,
                capture_output=True,
            )
        command = [_cybermission(), "scan", network, "--ports", "502", "--format", "json"]
        if udp_ports is not None:
            command += ["--udp-ports", udp_ports]
        elapsed, cpu, peak, text = _run_timed(command, env)
    report = json.loads(text)
    identified = sum(1 for a in report["assets"] if a.get("vendor") and a.get("model"))
    kinds = Counter(
        f"{e['stage']}: {_ADDRESS.sub('<address>', str(e['error']))[:50]}"
        for e in report["scan"]["errors"]
    )
    status = report["scan"]["status"]
    if kinds:
        status += "; " + ", ".join(f"{n} x {kind}" for kind, n in kinds.most_common(3))
    return Timed(elapsed, identified, peak, status, cpu)


def run_nmap(network: str) -> Timed:
    nmap = shutil.which("nmap")
    if nmap is None:
        raise SystemExit("nmap is missing: apt-get install nmap")
    command = [nmap, "-n", "-Pn", "-sT", "-p", "502", "--script", "modbus-discover", network]
    elapsed, cpu, peak, text = _run_timed(command, dict(os.environ))
    return Timed(elapsed, text.count("Device identification:"), peak, cpu_s=cpu)


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def compare(
    network: str,
    devices: int,
    profile: str,
    load: str,
    runs: int,
    advisories: Path | None = None,
    udp_ports: str | None = None,
) -> bool:
    ratios: list[float] = []
    ours_s: list[float] = []
    peer_s: list[float] = []
    complete = True
    with cpu_hogs(load == "stress"):
        # One untimed pass: pymodbus's lazy set-up on the simulators' first connections.
        run_cybermission(network, "lab")
        for index in range(runs):
            ours = run_cybermission(network, profile, advisories=advisories, udp_ports=udp_ports)
            peer = run_nmap(network)
            ratios.append(ours.seconds / peer.seconds)
            ours_s.append(ours.seconds)
            peer_s.append(peer.seconds)
            complete = complete and ours.identified == devices
            print(
                f"{profile:4} {load:6} run {index + 1}: cybermission {ours.seconds:6.2f} s "
                f"(CPU {ours.cpu_s:.2f} s) {ours.identified:4}/{devices} identified "
                f"({ours.status}, {ours.peak_rss_mib:.0f} MiB); nmap {peer.seconds:5.2f} s "
                f"(CPU {peer.cpu_s:.2f} s) {peer.identified:4}/{devices}; ratio "
                f"{ratios[-1]:.2f}; load {_load_average()}",
                flush=True,
            )
    print(
        f"== {profile} {load}: cybermission median {statistics.median(ours_s):.2f} s, nmap median "
        f"{statistics.median(peer_s):.2f} s, median ratio {statistics.median(ratios):.2f}, "
        f"all identified: {complete}",
        flush=True,
    )
    return complete


def memory() -> None:
    peaks = {}
    for network in MEMORY_RANGES:
        # TCP only: UDP probes go to every address (65,536 x 24 sessions on a /16), which
        # measures time, not the memory the range costs.
        timed = run_cybermission(network, "lab", udp_ports="none")
        peaks[network] = timed.peak_rss_mib
        print(
            f"memory {network}: {timed.seconds:.2f} s, peak RSS {timed.peak_rss_mib:.1f} MiB",
            flush=True,
        )
    small, large = (peaks[n] for n in MEMORY_RANGES)
    print(f"== memory /16 vs /20: {large / small:.3f}x", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scan_e2e")
    parser.add_argument("--devices", type=int, default=1024)
    parser.add_argument("--base", default="127.20.128.0")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profiles", default="lab,safe")
    parser.add_argument("--loads", default="idle,stress")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="no simulators, no nmap")
    parser.add_argument(
        "--advisories",
        type=Path,
        default=None,
        help="import these CSAF advisories into each run's store first (untimed), e.g. "
        "../shared/data/advisories/cisa-csaf-ot-2017-2024.tar.xz",
    )
    parser.add_argument(
        "--udp-ports",
        default=None,
        help="the scan's --udp-ports: 'none' does what the peer does (TCP 502 only); default: "
        "the command's default UDP ports on every address, which the peer does not probe",
    )
    args = parser.parse_args(argv)
    # Stopped by a signal: still stop the simulators and the CPU hogs (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.memory_only:
        memory()
        return 0
    network = _network(args.base, args.devices)
    complete = True
    with simulators(args.base, args.devices):
        for load in args.loads.split(","):
            for profile in args.profiles.split(","):
                complete = (
                    compare(
                        network,
                        args.devices,
                        profile,
                        load,
                        args.runs,
                        args.advisories,
                        args.udp_ports,
                    )
                    and complete
                )
    if args.memory:
        memory()
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Discovery benchmark: cybermission's TCP connect sweep against ``nmap -sT`` on the same targets.

Workloads 1 (dense) and 2 (sparse) of ../shared/BENCHMARKS.md on loopback only. Run it with
``.venv/bin/python -m bench.discovery``; see bench/README.md for what it prints.
"""

import argparse
import asyncio
import gc
import ipaddress
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.cpu_hogs import cpu_hogs
from bench.lab_listeners import plan_live_hosts
from cybermission.config import PacingProfile, PacingSettings
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.probe_processes import probe_specs
from cybermission.scans.probing import ProbePlan
from cybermission.scans.sweep import HostResult

PORTS = [502, 102, 44818, 2404, 20000, 4840, 1911, 9600, 80, 443]
DENSE_NETWORK = "127.100.0.0/20"
# Inside the benchmark's own network namespace: its loopback holds the whole 127.0.0.0/8.
SPARSE_NETWORK = "127.101.0.0/20"
LIVE_FRACTION = 0.05
SEED = 20_240_502
NMAP_DENSE = ["--max-retries", "1", "-T5"]
NO_PROBES = ProbePlan(tcp={}, udp={})
NMAP_SPARSE = ["--min-hostgroup", "4096", "--max-retries", "1", "--min-rate", "5000"]

Found = set[tuple[str, int]]


@dataclass
class Figures:
    workload: str
    probes: int
    expected_open: int
    cybermission_s: list[float]
    nmap_s: list[float]
    cybermission_found_ok: bool
    nmap_found_ok: bool
    same_open_ports: bool

    @property
    def cm_median_s(self) -> float:
        return statistics.median(self.cybermission_s)

    @property
    def nmap_median_s(self) -> float:
        return statistics.median(self.nmap_s)


async def _sweep_once(network: str, processes: int) -> Found:
    guard = ScopeGuard([ScopeRule.build("bench", [network])])
    pacing = PacingSettings(profile=PacingProfile.LAB)
    found: Found = set()
    # No probe planned: each open port is only recorded as open (what the peer's sweep finds).
    probed = probe_specs(
        [network], PORTS, guard=guard, pacing=pacing, plan=NO_PROBES, processes=processes
    )
    async for result in probed:
        if isinstance(result, HostResult):
            found.update((result.address, port) for port in result.open_ports)
    return found


def run_cybermission(network: str, processes: int = 1) -> tuple[float, Found]:
    gc.collect()
    started = time.perf_counter()
    found = asyncio.run(_sweep_once(network, processes))
    return time.perf_counter() - started, found


def run_nmap(network: str, extra: list[str]) -> tuple[float, Found]:
    nmap = shutil.which("nmap")
    if nmap is None:
        raise SystemExit("nmap is missing: apt-get install -y nmap")
    command = [
        nmap,
        "-n",
        "-sT",
        "-Pn",
        "-p",
        ",".join(map(str, PORTS)),
        *extra,
        "-oX",
        "-",
        network,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=True, text=True)
    elapsed = time.perf_counter() - started
    found: Found = set()
    for host in ET.fromstring(done.stdout).iter("host"):
        address = host.find("address")
        assert address is not None
        for port in host.iter("port"):
            state = port.find("state")
            if state is not None and state.get("state") == "open":
                found.add((address.get("addr", ""), int(port.get("portid", "0"))))
    return elapsed, found


def run_workload(
    name: str,
    network: str,
    *,
    repeat: int,
    silent: bool,
    nmap_extra: list[str],
    processes: int = 1,
) -> Figures:
    addresses = [str(a) for a in ipaddress.ip_network(network)]
    plan = plan_live_hosts(addresses, PORTS, fraction=LIVE_FRACTION, seed=SEED)
    expected: Found = {(a, p) for a, ports in plan.items() for p in ports}
    if silent:
        _drop_silent([a for a in addresses if a not in plan])
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        listeners = subprocess.Popen(
            [sys.executable, "-m", "bench.lab_listeners", str(plan_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert listeners.stdout is not None
            if listeners.stdout.readline().strip() != "ready":
                raise SystemExit("the listener process did not start")
            cm_times, nmap_times = [], []
            cm_ok = nmap_ok = same = True
            for _ in range(repeat):
                cm_s, cm_found = run_cybermission(network, processes)
                nmap_s, nmap_found = run_nmap(network, nmap_extra)
                cm_times.append(cm_s)
                nmap_times.append(nmap_s)
                cm_ok &= cm_found == expected
                nmap_ok &= nmap_found == expected
                same &= cm_found == nmap_found
                print(
                    f"  {name}: cybermission {cm_s:6.2f} s ({len(cm_found)} open), "
                    f"nmap {nmap_s:6.2f} s ({len(nmap_found)} open)",
                    file=sys.stderr,
                )
        finally:
            assert listeners.stdin is not None
            listeners.stdin.close()
            listeners.wait(timeout=10)
    return Figures(
        name, len(addresses) * len(PORTS), len(expected), cm_times, nmap_times, cm_ok, nmap_ok, same
    )


def _drop_silent(addresses: list[str]) -> None:
    """Drop every packet to the silent addresses: their SYNs go unanswered, as on a sparse net."""
    ruleset = (
        "table ip cmbench {\n"
        f"  set silent {{ type ipv4_addr; elements = {{ {', '.join(addresses)} }} }}\n"
        "  chain input { type filter hook input priority 0; policy accept; "
        "ip daddr @silent drop; }\n"
        "}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)


def report(figures: Figures) -> None:
    cm, nm = figures.cm_median_s, figures.nmap_median_s
    print(
        f"{figures.workload}: {figures.probes} probes, {figures.expected_open} open ports, "
        f"medians of {len(figures.cybermission_s)}"
    )
    print(f"  cybermission sweep  {cm:7.2f} s  {figures.probes / cm:9.0f} probes/s")
    print(f"  nmap -sT            {nm:7.2f} s  {figures.probes / nm:9.0f} probes/s")
    print(f"  time ratio cybermission/nmap: {cm / nm:.2f}")
    print(
        f"  open ports: cybermission {'ok' if figures.cybermission_found_ok else 'WRONG'}, "
        f"nmap {'ok' if figures.nmap_found_ok else 'WRONG'}, "
        f"same: {'yes' if figures.same_open_ports else 'NO'}"
    )


def run_sparse(repeat: int, processes: int = 1) -> Figures | None:
    """Workload 2 inside a network namespace this benchmark creates (and removes)."""
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        why = f"missing {', '.join(missing)}" if missing else "needs root"
        print(f"sparse: skipped ({why}: it drops packets with nftables in a network namespace)")
        return None
    namespace = f"cmbench{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", namespace], check=True)
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        inner = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-m",
                "bench.discovery",
                "--inner-sparse",
                "--sparse-repeat",
                str(repeat),
                "--processes",
                str(processes),
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"sparse: skipped (could not set up the network namespace: {exc})")
        return None
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False, stderr=subprocess.DEVNULL)
    if inner.returncode != 0:
        print(f"sparse: failed inside the namespace (exit {inner.returncode})")
        return None
    data = json.loads(inner.stdout.strip().splitlines()[-1])
    return Figures(**data)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.discovery", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="dense runs of each tool")
    parser.add_argument("--sparse-repeat", type=int, default=2, help="sparse runs of each tool")
    parser.add_argument("--skip-sparse", action="store_true")
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--inner-sparse", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--stress", action="store_true", help="dense under two CPU hogs (stress-ng --cpu 2)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="probe processes (one event loop per core)"
    )
    args = parser.parse_args()
    # 15,000 sockets in flight in the lab profile: lift the soft descriptor limit to the hard one.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.inner_sparse:
        figures = run_workload(
            "sparse",
            SPARSE_NETWORK,
            repeat=args.sparse_repeat,
            silent=True,
            nmap_extra=NMAP_SPARSE,
            processes=args.processes,
        )
        print(json.dumps(asdict(figures)))
        return
    failed = False
    if not args.skip_dense:
        with cpu_hogs(args.stress):
            dense = run_workload(
                "dense under stress-ng --cpu 2" if args.stress else "dense",
                DENSE_NETWORK,
                repeat=args.repeat,
                silent=False,
                nmap_extra=NMAP_DENSE,
                processes=args.processes,
            )
        report(dense)
        failed |= not (dense.cybermission_found_ok and dense.same_open_ports)
    if not args.skip_sparse:
        sparse = run_sparse(args.sparse_repeat, args.processes)
        if sparse is not None:
            report(sparse)
            failed |= not (sparse.cybermission_found_ok and sparse.same_open_ports)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

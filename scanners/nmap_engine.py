"""Discovery through Debian's nmap (python-nmap, the optional ``nmap`` extra): ``--engine nmap``.

nmap runs a TCP connect scan (``-sT``: no raw sockets, no root) with ``-n`` always (reverse DNS
would leave the authorised networks), ``-Pn`` (OT hosts often drop ping), and the scan's pacing
turned into nmap's own limits. Hosts are handed over one by one after the scope guard judged them
again. On ports no cybermission probe identifies, nmap's read-only ICS scripts run and their output
becomes observations (probe ``nmap:<script>``), kept as text: nmap returns identity as one string.
"""

import asyncio
import logging
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cybermission.config import PacingSettings
from cybermission.errors import ProbeError, ScopeError, ValidationError
from cybermission.guard import ScopeGuard
from cybermission.probes import Facts, JSONValue, Observation, Transport
from cybermission.scans.engines import EngineResult
from cybermission.scans.sweep import HostResult

logger = logging.getLogger(__name__)

# Read-only identification scripts shipped with Debian's nmap, by the port they speak to.
ICS_SCRIPTS: Mapping[int, tuple[str, str]] = {
    502: ("modbus-discover", "modbus"),
    102: ("s7-info", "s7comm"),
    44818: ("enip-info", "enip"),
    1911: ("fox-info", "fox"),
    2404: ("iec-identify", "iec104"),
    9600: ("omron-info", "fins"),
    1962: ("pcworx-info", "pcworx"),
}
MAX_SCRIPT_OUTPUT = 2000
HOSTS_PER_CALL = 1024


def nmap_arguments(pacing: PacingSettings, scripts: Sequence[str]) -> str:
    """The nmap options for our pacing; ``-n`` and ``-sT`` are not negotiable."""
    p = pacing.effective()
    args = [
        "-n",
        "-sT",
        "-Pn",
        "--max-retries",
        "1",
        "--max-rate",
        f"{p.global_rate_per_s:.0f}",
        "--max-parallelism",
        str(min(p.sockets_in_flight, 4096)),
        "--max-hostgroup",
        str(min(p.hosts_in_flight, 4096)),
        "--host-timeout",
        f"{max(30.0, p.probe_timeout_s * 20):.0f}s",
    ]
    if p.per_host_rate_per_s < 1000:
        args += ["--scan-delay", f"{1000.0 / p.per_host_rate_per_s:.0f}ms"]
    if scripts:
        args += ["--script", ",".join(sorted(scripts))]
    return " ".join(args)


class NmapEngine:
    name: ClassVar[str] = "nmap"

    async def discover(
        self,
        hosts: Sequence[str],
        ports: Sequence[int],
        *,
        guard: ScopeGuard,
        pacing: PacingSettings,
        script_ports: Sequence[int],
    ) -> EngineResult:
        if shutil.which("nmap") is None:
            raise ValidationError("engine: nmap is not installed (apt-get install nmap)")
        allowed: list[str] = []
        refused: list[HostResult] = []
        for host in hosts:
            try:
                guard.check(host)
            except ScopeError as exc:
                refused.append(HostResult(host, (), 0, 0, (f"scope: {exc}",)))
                continue
            allowed.append(host)
        scripts = [ICS_SCRIPTS[p][0] for p in script_ports if p in ICS_SCRIPTS]
        arguments = nmap_arguments(pacing, scripts)
        result = EngineResult(hosts=refused)
        for start in range(0, len(allowed), HOSTS_PER_CALL):
            chunk = allowed[start : start + HOSTS_PER_CALL]
            scanned = await asyncio.to_thread(_run_nmap, chunk, ports, arguments)
            _collect(scanned, chunk, ports, result)
        return result


def _run_nmap(hosts: Sequence[str], ports: Sequence[int], arguments: str) -> dict[str, Any]:
    import nmap  # the optional extra: imported only when the engine runs

    scanner = nmap.PortScanner()
    try:
        raw: dict[str, Any] = scanner.scan(
            hosts=" ".join(hosts),
            ports=",".join(str(p) for p in ports),
            arguments=arguments,
            sudo=False,
        )
    except nmap.PortScannerError as exc:
        raise ProbeError(f"nmap failed: {str(exc)[:300]}") from exc
    return raw


def _collect(
    raw: Mapping[str, Any], hosts: Sequence[str], ports: Sequence[int], result: EngineResult
) -> None:
    scan: Mapping[str, Any] = raw.get("scan", {})
    for host in hosts:
        found = scan.get(host, {})
        tcp: Mapping[int, Mapping[str, Any]] = found.get("tcp", {})
        open_ports = tuple(p for p in ports if tcp.get(p, {}).get("state") == "open")
        filtered = sum(1 for p in ports if tcp.get(p, {}).get("state") == "filtered")
        result.hosts.append(
            HostResult(host, open_ports, len(ports) - len(open_ports) - filtered, filtered, ())
        )
        for port in open_ports:
            scripts: Mapping[str, str] = tcp[port].get("script", {})
            for script, text in scripts.items():
                protocol = next((proto for s, proto in ICS_SCRIPTS.values() if s == script), None)
                if protocol is None:
                    continue
                result.observations.append(
                    Observation(
                        probe=f"nmap:{script}",
                        protocol=protocol,
                        address=host,
                        port=port,
                        transport=Transport.TCP,
                        facts=_script_facts(script, text, tcp[port]),
                    )
                )


def _script_facts(script: str, text: str, port_info: Mapping[str, Any]) -> Facts:
    """Keep nmap's text, and the ``key: value`` lines most ICS scripts print, bounded."""
    facts: dict[str, JSONValue] = {"nmap_script": script, "nmap_output": text[:MAX_SCRIPT_OUTPUT]}
    for line in text.splitlines()[:64]:
        key, sep, value = line.strip().partition(":")
        if sep and key and value.strip():
            facts.setdefault(
                f"nmap_{key.strip().lower().replace(' ', '_')[:40]}", value.strip()[:200]
            )
    for key in ("product", "version"):
        if port_info.get(key):
            facts[f"nmap_{key}"] = str(port_info[key])[:200]
    return facts

"""Live passive sensor: packets/s and peak memory of ``cybermission listen`` fed by
``tcpreplay --topspeed`` over a veth pair, against ``tshark -r`` decoding the same files, as the
capture grows.

Workload: every shared capture (Ethernet, ~22,500 frames) concatenated ``copies`` times into one
file in a temporary folder; copy k has the second and third octets of every IPv4 address changed
(XOR k), so each copy adds new hosts, services and conversations and the sensor's bounded state
is exercised as the file grows (the decoder does not check IP checksums, nor does tshark).

Per size:
- **listen**: the real command (``cybermission listen IFACE --filter "tcp or udp"``, a fresh
  SQLite store) in a namespace of its own; the file replayed at top speed onto the other end of
  the veth. Rate = frames it read / CPU seconds it spent from the socket being bound to the last
  frame read and stored (one process: one core at most). Peak RSS = its VmHWM. Kernel drops are
  reported (non-zero means the replay outran it).
- **tshark**: ``tshark -r FILE -n`` (one-pass dissection, output discarded): frames / CPU seconds
  of the process less its start-up (the CPU seconds of the same command over a one-frame file,
  measured in the same run, as listen's start-up is left out too), its peak RSS.

Needs root, Debian's tcpreplay and tshark. Exits non-zero when listen misses frames it was sent.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from scapy.utils import RawPcapReader, RawPcapWriter

from bench.cpu_hogs import cpu_hogs
from tests.cli.stores import store_url
from tests.mirror import listening, mirror_link

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pcaps"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figures:
    frames: int
    file_bytes: int
    listen_frames: int
    listen_dropped: int
    listen_cpu_s: float
    listen_pps: float
    listen_rss_mib: float
    replay_pps: float
    tshark_cpu_s: float
    tshark_pps: float
    tshark_rss_mib: float


def build_capture(path: Path, copies: int) -> int:
    """Write the workload file; the number of frames in it."""
    frames: list[bytes] = []
    for capture in sorted(SHARED.rglob("*.pcap*")):
        with RawPcapReader(str(capture)) as reader:
            frames.extend(bytes(frame) for frame, _meta in reader)
    writer = RawPcapWriter(str(path), linktype=1, sync=False)
    written = 0
    for copy in range(copies):
        shift = bytes([copy & 0xFF, (copy >> 8) & 0xFF])
        for frame in frames:
            writer.write(_renumbered(frame, shift) if copy else frame)
            written += 1
    writer.close()
    return written


def _renumbered(frame: bytes, shift: bytes) -> bytes:
    """``frame`` with octets 2 and 3 of its IPv4 source and destination XORed with ``shift``."""
    if frame[12:14] != b"\x08\x00" or len(frame) < 34:
        return frame
    data = bytearray(frame)
    for start in (27, 31):
        data[start] ^= shift[0]
        data[start + 1] ^= shift[1]
    return bytes(data)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_listen(capture: Path, frames: int, workdir: Path) -> dict[str, float]:
    env = {"CYBERMISSION_DATABASE_URL": store_url(workdir / "listen.db")}
    with (
        mirror_link() as mirror,
        listening(mirror, env, workdir, "--format", "json", "--filter", "tcp or udp") as run,
    ):
        pid = run.process.pid
        cpu_start = _cpu_s(pid)
        started = time.monotonic()
        sent = mirror.replay([capture])
        replay_s = time.monotonic() - started
        # Wait until the sensor stops using CPU: every frame read and every batch stored.
        last = _cpu_s(pid)
        while True:
            time.sleep(2.0)
            now = _cpu_s(pid)
            if now - last < 0.05:
                break
            last = now
        cpu_s = _cpu_s(pid) - cpu_start
        rss = _hwm_mib(pid)
        stdout, _ = run.stop()
    capture_figures = json.loads(stdout)["capture"]
    if sent != frames:
        raise SystemExit(f"tcpreplay sent {sent} of {frames} frames")
    return {
        "frames": capture_figures["packets"],
        "dropped": capture_figures["kernel_dropped"],
        "cpu_s": cpu_s,
        "rss": rss,
        "replay_pps": sent / replay_s,
    }


def measure_tshark(capture: Path) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of ``tshark -r`` over the file."""
    process = subprocess.Popen(
        ["tshark", "-r", str(capture), "-n"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"tshark failed ({process.returncode})")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def tshark_startup_s(root: Path) -> float:
    """The CPU seconds ``tshark -r`` spends on a one-frame file: its start-up."""
    one = root / "one-frame.pcap"
    with RawPcapReader(str(SHARED / "modbus" / "mod_17.pcap")) as reader:
        frame, _meta = next(iter(reader))
    writer = RawPcapWriter(str(one), linktype=1, sync=False)
    writer.write(bytes(frame))
    writer.close()
    return min(measure_tshark(one)[0] for _ in range(3))


def run_size(copies: int, root: Path, tshark_start_s: float) -> Figures:
    workdir = root / f"x{copies}"
    workdir.mkdir()
    capture = workdir / "workload.pcap"
    frames = build_capture(capture, copies)
    listened = measure_listen(capture, frames, workdir)
    tshark_cpu, tshark_rss = measure_tshark(capture)
    tshark_cpu = max(tshark_cpu - tshark_start_s, 1e-3)
    return Figures(
        frames=frames,
        file_bytes=capture.stat().st_size,
        listen_frames=int(listened["frames"]),
        listen_dropped=int(listened["dropped"]),
        listen_cpu_s=listened["cpu_s"],
        listen_pps=listened["frames"] / listened["cpu_s"],
        listen_rss_mib=listened["rss"],
        replay_pps=listened["replay_pps"],
        tshark_cpu_s=tshark_cpu,
        tshark_pps=frames / tshark_cpu,
        tshark_rss_mib=tshark_rss,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.passive", description=__doc__)
    parser.add_argument("--copies", default="1,4,16", help="sizes, in copies of the capture set")
    parser.add_argument("--stress", action="store_true", help="under stress-ng --cpu 2")
    parser.add_argument("--json", action="store_true", help="figures as JSON lines too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: namespaces, a veth pair and a raw socket")
    print(
        f"{'frames':>9} {'MB':>6} | {'listen pps/core':>15} {'RSS MiB':>8} {'drops':>6} "
        f"{'replay pps':>10} | {'tshark pps/core':>15} {'RSS MiB':>8} | ratio"
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-passive-") as folder, cpu_hogs(args.stress):
        start_s = tshark_startup_s(Path(folder))
        print(f"tshark start-up: {start_s:.2f} CPU s (left out of its rate)")
        for copies in (int(c) for c in args.copies.split(",")):
            f = run_size(copies, Path(folder), start_s)
            print(
                f"{f.frames:>9} {f.file_bytes / 1e6:>6.1f} | {f.listen_pps:>15,.0f} "
                f"{f.listen_rss_mib:>8.1f} {f.listen_dropped:>6} {f.replay_pps:>10,.0f} | "
                f"{f.tshark_pps:>15,.0f} {f.tshark_rss_mib:>8.1f} | "
                f"{f.listen_pps / f.tshark_pps:.2f}"
            )
            if args.json:
                print(json.dumps(asdict(f)))
            # Frames the filter passes are fewer than those sent; a drop means some were lost.
            failed |= f.listen_dropped > 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

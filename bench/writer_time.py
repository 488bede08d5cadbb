"""The run writer's own share of a real ``cybermission scan``: its thread's CPU and wall time.

    python -m bench.writer_time scan 127.20.128.0/22 --ports 502 --format json --udp-ports none

Runs the command given (any ``cybermission`` arguments, in this process, with the environment's
store and pacing) and, at exit, prints on stderr what the writer spent in its three parts: its
inputs (``_prepare_writing``: rules, placements, advisory index), its batches (``store_batch``:
inventory, rules, findings, events) and the run's end (``finish_run``), as thread CPU and wall
seconds, beside the whole process's CPU. The writer is one thread that starts after the
command's imports: its CPU plus the imports' time is a floor under the command's wall time that
no overlap with probing can lower (bench/README.md, "The floor of the cold command").

Nothing is sent here but what the command itself sends; point it at loopback simulators only
(``python -m bench.modbus_identify serve``).
"""

import atexit
import sys
import time
from collections.abc import Callable
from typing import Any

from cybermission.scans import pipeline, writing

# Part -> [thread CPU seconds, wall seconds], summed over the part's calls.
_SPENT: dict[str, list[float]] = {"inputs": [0.0, 0.0], "batches": [0.0, 0.0], "end": [0.0, 0.0]}


def _timed(part: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _SPENT[part][0] += time.thread_time() - cpu
            _SPENT[part][1] += time.perf_counter() - wall

    return timed


def _report() -> None:
    parts = ", ".join(f"{part} {cpu:.3f} s cpu ({wall:.3f} s wall)" for part, (cpu, wall) in
                      _SPENT.items())  # fmt: skip
    writer = sum(cpu for cpu, _ in _SPENT.values())
    print(
        f"writer: {parts}; writer cpu {writer:.3f} s; process cpu {time.process_time():.3f} s",
        file=sys.stderr,
    )


def main() -> None:
    # Wrapped where the pipeline and the writer look them up.
    for module, name, part in (
        (pipeline, "_prepare_writing", "inputs"),
        (writing, "store_batch", "batches"),
        (pipeline, "finish_run", "end"),
    ):
        setattr(module, name, _timed(part, getattr(module, name)))
    atexit.register(_report)
    from cybermission.cli import main as cybermission

    sys.argv = ["cybermission", *sys.argv[1:]]
    cybermission()


if __name__ == "__main__":
    main()

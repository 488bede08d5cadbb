"""The documentation's port lists (and each probe's identity authority) are generated from the
probes, and a test fails when one drifts.

The probes' ``default_ports`` are the one list of ports (the default sweep is derived from them at
run time); ``scanners/README.md`` shows them between ``<!-- probe-ports -->`` markers (the env
example is generated whole: tests/test_config_example.py). After a probe change, regenerate with::

    .venv/bin/python -m tests.test_port_docs
"""

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from cybermission.probes import Probe, Transport, declared_ports, load_probes

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "probe-ports", "/probe-ports"


def probe_table(probes: Mapping[str, Probe]) -> str:
    """The markdown table of every probe's ports and identity authority, by probe name."""
    lines = [
        "| probe | protocol | ports | order | opt-in | authority |",
        "|---|---|---|---|---|---|",
    ]
    for name, probe in sorted(probes.items()):
        ports = ", ".join(f"{port}/{probe.transport}" for port in probe.default_ports)
        optional = "yes" if probe.optional else ""
        lines.append(
            f"| `{name}` | {probe.protocol} | {ports} | {probe.order} | {optional} "
            f"| {probe.authority} |"
        )
    tcp = ",".join(map(str, declared_ports(probes.values(), Transport.TCP)))
    udp = ",".join(map(str, declared_ports(probes.values(), Transport.UDP)))
    lines += ["", f"Default sweep: TCP {tcp}; UDP {udp}."]
    return "\n".join(lines)


# Each document, the comment syntax of its markers, and what goes between them.
DOCUMENTS = {
    "scanners/README.md": (("<!-- ", " -->"), probe_table),
}


def _block(text: str, marks: tuple[str, str]) -> re.Match[str]:
    opening, closing = (re.escape(marks[0] + m + marks[1]) for m in (BEGIN, END))
    found = re.search(rf"(?<={opening}\n)(.*?)(?={closing})", text, re.DOTALL)
    assert found is not None, f"no {marks[0]}{BEGIN}{marks[1]} block"
    return found


def regenerate(path: str, probes: Mapping[str, Probe]) -> str:
    """The document with its port block replaced by the probes' current ports."""
    marks, render = DOCUMENTS[path]
    text = (ROOT / path).read_text()
    block = _block(text, marks)
    return text[: block.start()] + render(probes) + "\n" + text[block.end() :]


@pytest.mark.parametrize("path", sorted(DOCUMENTS))
def test_documented_ports_are_the_probes_ports(path: str) -> None:
    text = (ROOT / path).read_text()
    assert regenerate(path, load_probes()) == text, (
        f"{path} lists other ports than the probes declare: "
        "run .venv/bin/python -m tests.test_port_docs"
    )


if __name__ == "__main__":
    loaded = load_probes()
    for document in DOCUMENTS:
        (ROOT / document).write_text(regenerate(document, loaded))
        print(f"wrote {document}")

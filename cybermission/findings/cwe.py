"""CWE ids of rules: the form a rule writes (``CWE-306``) and MITRE's names for the ones the
shipped pack uses.

A rule names the weakness it detects so that its findings carry a CWE wherever a CVE would go
(OCSF 1.1 requires a ``cve`` or a ``cwe`` in every vulnerability). The name is looked up here
rather than written in each rule, so the same id never carries two spellings; an id that is not
in this table is still a valid CWE id (the name is then left out of the exports).
Names are those of MITRE's CWE list (cwe.mitre.org/data/definitions/<n>.html, version 4.x).
"""

import re
from typing import Final

CWE_PATTERN: Final = r"^CWE-[1-9][0-9]{0,4}$"
CWE_RE: Final = re.compile(CWE_PATTERN)

CWE_NAMES: Final[dict[str, str]] = {
    "CWE-295": "Improper Certificate Validation",
    "CWE-306": "Missing Authentication for Critical Function",
    "CWE-319": "Cleartext Transmission of Sensitive Information",
    "CWE-324": "Use of a Key Past its Expiration Date",
    "CWE-327": "Use of a Broken or Risky Cryptographic Algorithm",
    "CWE-497": "Exposure of Sensitive System Information to an Unauthorized Control Sphere",
    "CWE-523": "Unprotected Transport of Credentials",
    "CWE-653": "Improper Isolation or Compartmentalization",
    "CWE-668": "Exposure of Resource to Wrong Sphere",
    "CWE-798": "Use of Hard-coded Credentials",
    "CWE-923": "Improper Restriction of Communication Channel to Intended Endpoints",
    "CWE-924": (
        "Improper Enforcement of Message Integrity During Transmission in a Communication Channel"
    ),
    "CWE-1104": "Use of Unmaintained Third Party Components",
    "CWE-1328": "Security Version Number Mutable to Older Versions",
    "CWE-1329": "Reliance on Component That is Not Updateable",
    "CWE-1392": "Use of Default Credentials",
    "CWE-1395": "Dependency on Vulnerable Third-Party Component",
}


def cwe_name(cwe: str) -> str | None:
    """MITRE's name of ``cwe`` when this table has it."""
    return CWE_NAMES.get(cwe)


def cwe_url(cwe: str) -> str:
    """The CWE's page at MITRE."""
    return f"https://cwe.mitre.org/data/definitions/{cwe.removeprefix('CWE-')}.html"

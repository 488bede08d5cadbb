"""What sites and the centre send each other: a host's report in its JSON wire form.

Both sides import this module: the sensor to publish results parts, the central ingestion to read
them back. It holds no store code (the probing side's import contract, pyproject).
"""

# A host's report has one JSON form, kept beside HostReport (the pipeline's spool writes it too).
from cybermission.scans.probing import report_from_json, report_to_json

__all__ = ["report_from_json", "report_to_json"]

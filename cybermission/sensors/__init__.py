"""Site sensors: the distributed mode on Celery and RabbitMQ (SCALE-OUT.md).

The sensor side (``agent``, ``broker``, ``journal``, ``topology``) probes through
:mod:`cybermission.scans.probing` and imports no store code (import-linter). The central side
(``service``: sites, enrolment, chunks, finishing runs; ``ingestion``; ``relay``; ``central``;
``metrics``; ``models``) writes through :mod:`cybermission.scans.recording`. Both sides speak
``messages``: typed, versioned pydantic models (a chunk, a results part); a message of another
version, or malformed, is refused whole with its reason and kept (the sensor's journal).
"""

"""Site sensors: the distributed mode on Celery and RabbitMQ (SCALE-OUT.md).

The sensor side (``agent``, ``broker``, ``journal``, ``messages``, ``topology``) probes through
:mod:`cybermission.scans.probing` and imports no store code (import-linter). The central side
(``service``: sites, enrolment, chunks, finishing runs; ``ingestion``; ``relay``; ``central``;
``metrics``; ``models``) writes through :mod:`cybermission.scans.recording`.
"""

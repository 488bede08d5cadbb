"""``python -m scanners.lab``: run the loopback lab (see :mod:`scanners.lab.runner`)."""

from scanners.lab.runner import main

raise SystemExit(main())

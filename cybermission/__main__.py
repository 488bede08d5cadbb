"""``python -m cybermission``: the console script."""

from cybermission.cli import main

main()

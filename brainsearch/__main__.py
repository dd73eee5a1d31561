"""``python -m brainsearch``: the same as the ``brainsearch`` command."""

from brainsearch.cli import main

main()

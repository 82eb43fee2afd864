"""`python -m deepsmlm.cli`: the same as the `deepsmlm` command."""

from deepsmlm.cli import main

main()

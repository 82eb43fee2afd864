"""`python -m deepsmlm` (and `torchrun … -m deepsmlm train …`): the same as the `deepsmlm` command."""

from deepsmlm.cli import main

main()

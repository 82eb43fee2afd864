"""Output heads: what a network's output means. Each head builds its training target and loss, and decodes
the output into localizations on the output grid (:mod:`deepsmlm.heads.grid`, the one place positions go
between nm and fine pixels or planes); :func:`deepsmlm.heads.registry.head_for` picks a model's head."""

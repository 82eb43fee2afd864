"""Phase-mask design: CRLB-optimal masks, masks learned end to end with the network, multicolour masks.

One mask parameterisation (pixel | Zernike, :mod:`deepsmlm.design.mask_phase`) serves every design; the
design layer sits above training (end-to-end learning drives the training loop) and below the commands.
"""

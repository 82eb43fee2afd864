"""Calibration from measured data (issue 20): a pupil fitted to bead z-stacks by maximum likelihood, camera
gain, offset and noise from dark and flat frames, and training settings estimated from a raw movie, each
handed to simulation, training and inference as a built component or a config.

No features yet; the layer contract (pyproject.toml) places it above design, so a fit may reuse the mask
parameterisation of :mod:`deepsmlm.design.mask_phase`.
"""

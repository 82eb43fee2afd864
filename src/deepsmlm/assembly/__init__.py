"""Assembly: the one place a config is turned into built components (PSF, camera, samplers, simulator,
network, predictor, fitter). Layers below receive components or plain values, never the config tree."""

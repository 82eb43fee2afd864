"""Shipped models: one folder per model with config.yaml and model.safetensors."""

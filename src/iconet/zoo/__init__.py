"""Shipped iconet models: one folder per model (model.safetensors, config.yaml, model_card.md)."""

"""Pure ``nn.Module`` super-resolution models and their registry (no file I/O here)."""

from iconet.models.base import ModelConfig, SRModel
from iconet.models.registry import build_model, make_config, model_names, register, saved_model_config

__all__ = ["ModelConfig", "SRModel", "build_model", "make_config", "model_names", "register", "saved_model_config"]

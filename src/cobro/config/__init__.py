"""Configuration: the validated ``cobro.yaml`` schema and its loader."""

from cobro.config.loader import load_config, parse_config
from cobro.config.schema import CobroConfig

__all__ = ["CobroConfig", "load_config", "parse_config"]

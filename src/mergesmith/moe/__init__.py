"""Mixtures of experts from dense models (mergekit-moe's configs): `build_moe`, `load_moe_config`."""

from __future__ import annotations

from mergesmith.moe.build import MoEResult, build_moe
from mergesmith.moe.config import Expert, MoEConfig, load_moe_config

__all__ = ["build_moe", "load_moe_config", "MoEConfig", "Expert", "MoEResult"]

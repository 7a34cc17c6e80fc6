"""Engines generate tokens; the rest of tether speaks to them through ``Engine``."""

from tether.engines.base import (
    Engine,
    EngineInfo,
    EngineStats,
    FimTokens,
    GenerationChunk,
    GenerationRequest,
    SamplingParams,
)

__all__ = [
    "Engine",
    "EngineInfo",
    "EngineStats",
    "FimTokens",
    "GenerationChunk",
    "GenerationRequest",
    "SamplingParams",
]

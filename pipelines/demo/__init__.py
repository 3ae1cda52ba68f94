"""Deterministic demo estate generator (`patchledger generate`)."""

from .generator import GenerationSummary, generate_estate

__all__ = ["GenerationSummary", "generate_estate"]

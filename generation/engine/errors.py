"""Error types of the VAR-CLIP engine (Tian et al., 2024; Zhang et al., 2024).

Callers tell bad input (EngineInputError) from unusable files (CheckpointError) and from bugs.
"""

from __future__ import annotations


class EngineInputError(ValueError):
    """A caller passed a value the engine cannot use (caption, setting, seed, device, dtype)."""


class EngineTypeError(EngineInputError, TypeError):
    """A caller passed a value of the wrong type; also a TypeError for callers that check that."""


class CheckpointError(ValueError):
    """A checkpoint file or directory is missing, malformed, or does not match the model."""


class SlowDtypeWarning(UserWarning):
    """A requested dtype runs, but far slower than float32 on this device (emulated bf16)."""

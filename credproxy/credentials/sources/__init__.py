"""Credential sources, one module each. Every source answers `lookup(url, username, index)`
with an `Answer` that says what it found, or why not, without the secret in its text."""

from .base import Answer, Source

__all__ = ["Answer", "Source"]

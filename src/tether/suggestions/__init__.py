"""Suggestions: ask the model for a changed file, and turn it into a reviewable patch."""

from tether.suggestions.patch import apply_patch, make_patch
from tether.suggestions.prompt import extract_code, suggestion_messages

__all__ = ["apply_patch", "extract_code", "make_patch", "suggestion_messages"]

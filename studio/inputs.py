# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Checks of the values that reach the studio from the page or from an API client.

An API client can send any JSON for any argument (a string for a number, null, NaN, 1e308, a list for a text), so
every handler argument passes through one of these before it is used; each refusal is a `StudioError` that names the
control and says what it takes. Torch-free: the UI and the Train tab use them too.
"""

from __future__ import annotations

import math
import unicodedata

from . import StudioError

# CLIP reads 77 tokens; a thousand characters is several times that, and bounds what a caller makes us tokenize.
MAX_PROMPT_CHARS = 1000
# Step 2's box: several prompts, one per line, with room for blank lines between them.
MAX_MOTION_TEXT_CHARS = 8 * MAX_PROMPT_CHARS
MOTION_TEXT = "The motion prompts box"
# Line breaks and tabs are what a multi-line text box holds; every other control character is refused.
ALLOWED_CONTROLS = {"\n", "\r", "\t"}


def text(value, name: str, max_chars: int = MAX_PROMPT_CHARS, multiline: bool = True) -> str:
    """`value` as text with its outer blanks removed; None is empty. Refuses what is not a string, what no UTF-8
    encoder can write (lone surrogates), control characters and text over `max_chars`."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StudioError(f"{name} must be text; got {type(value).__name__} {_short(value)}.")
    if len(value) > max_chars:
        raise StudioError(f"{name} is {len(value)} characters long; the limit is {max_chars}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StudioError(f"{name} holds a character that is not valid Unicode (a lone surrogate): remove it.") \
            from None
    allowed = ALLOWED_CONTROLS if multiline else set()
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in allowed:
            raise StudioError(f"{name} holds the control character U+{ord(char):04X}: remove it.")
    return value.strip()


def whole_number(value, name: str, low: int, high: int) -> int:
    """Sliders and API clients send 4.0 for 4; anything else out of range, or not a number, is refused."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StudioError(f"{name} must be a whole number from {low} to {high}; got {_short(value)}.")
    return value


def number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise StudioError(f"{name} must be a number from {low:g} to {high:g}; got {_short(value)}.")
    return float(value)


def flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise StudioError(f"{name} must be true or false; got {_short(value)}.")
    return value


def choice(value, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise StudioError(f"{name} must be one of {', '.join(choices)}; got {_short(value)}.")
    return value


def _short(value) -> str:
    """A refused value as the message shows it: its repr, cut short, since a caller may send megabytes."""
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."

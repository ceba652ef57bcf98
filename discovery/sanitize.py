"""Turn bytes that came from a discovered host into text that is safe to carry.

Everything a host sends is hostile until proven otherwise: a hostname may hold
shell metacharacters or terminal escapes, a file may be binary, a reply may be
ten megabytes. This module decodes with replacement, strips control and
bidirectional-override characters, and caps lengths, so nothing a host says can
break the agent, a terminal that shows the batch, or the batch's JSON.

It must never interpret the text (no shell, no eval): it only cleans it.
"""

from __future__ import annotations

import re

from app.core.batch_contract import MAX_NAME  # noqa: F401 - names kept here become CI names

# Longest value kept for one field (names, MAX_NAME, are shorter than free text).
MAX_VALUE = 1024
# Most entries kept in one list attribute (packages, services, sockets...).
MAX_LIST = 5000

# C0 and C1 controls, DEL, zero-width and bidi-override characters (the
# "trojan source" family), and the BOM. Newline and tab are handled per caller.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]"
)
_UNSAFE_AND_LINE_BREAKS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]"
)


# Terminal escape sequences (CSI like "ESC[31m", OSC like "ESC]0;title BEL"): removed
# whole, so no "[31m" debris is left once the ESC itself is gone.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]{0,512}(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]")
# One or more line breaks, with the blanks around them: one space in one-line text.
_LINE_BREAKS = re.compile("[ \t]*(?:(?:\r\n|[\n\r\v\f\x85\u2028\u2029])[ \t]*)+")


def decode(raw: bytes) -> str:
    """Decode host output as UTF-8, replacing what is not."""
    return raw.decode("utf-8", errors="replace")


def _no_surrogates(text: str) -> str:
    # Lone surrogates cannot be encoded as JSON by orjson; they only come from
    # strings produced elsewhere (an XML parser, os.fsdecode), never from decode().
    return text.encode("utf-8", errors="replace").decode("utf-8")


def clean_text(value: object, limit: int = MAX_VALUE) -> str:
    """One-line text: line breaks and tabs as one space (a multi-line sysDescr keeps its words apart),
    other control characters dropped, capped."""
    text = _ESCAPES.sub("", _no_surrogates(str(value))).replace("\t", " ")
    text = _LINE_BREAKS.sub(" ", text)
    text = _UNSAFE_AND_LINE_BREAKS.sub("", text).strip()
    return text[:limit]


def clean_block(value: str, limit: int) -> str:
    """Multi-line text: keeps newlines and tabs, drops other controls, capped."""
    return _UNSAFE.sub("", _ESCAPES.sub("", _no_surrogates(value)))[:limit]


def clean_list(values, limit_items: int = MAX_LIST, limit: int = MAX_VALUE) -> list[str]:
    """Clean each entry, drop empty ones, keep order, cap the count."""
    out: list[str] = []
    for value in values:
        text = clean_text(value, limit)
        if text:
            out.append(text)
            if len(out) >= limit_items:
                break
    return out


_TOKEN = re.compile(r"[^A-Za-z0-9._-]+")


def clean_token(value: str, limit: int = 64) -> str:
    """A name fit for an identifier part: letters, digits, dot, dash, underscore."""
    return _TOKEN.sub("-", clean_text(value, MAX_NAME)).strip("-.")[:limit]


def is_decimal(text: str) -> bool:
    """ASCII digits only. str.isdigit() also accepts '²' or '٣', which int() then refuses: on hostile
    output that turned one bad byte into a failed host."""
    return text.isascii() and text.isdigit()

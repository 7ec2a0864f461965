"""Exceptions raised by wedgenet for invalid input or infeasible requests."""

from __future__ import annotations


class WedgeNetError(ValueError):
    """Invalid input or parameters (a clear message says what is wrong)."""


class DictionaryTooLarge(WedgeNetError):
    """The exhaustive dictionary would exceed the configured column limit.

    Attributes
    ----------
    size : int
        Number of columns the exhaustive dictionary would have.
    limit : int
        The configured limit (``max_columns``).
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = int(size)
        self.limit = int(limit)
        super().__init__(
            f"the exhaustive dictionary has {self.size:,} columns, above the limit of "
            f"{self.limit:,}; use source='search' (or 'auto', the default, which searches "
            f"dictionaries this large), or raise max_columns"
        )


class SolveAborted(RuntimeError):
    """Raised when a progress callback asks the solver to stop."""

"""Errors raised for bad screen input. Each names the offending file, row or argument."""

from __future__ import annotations


class ScreenError(ValueError):
    """Base class of every error about a screen's files or tables."""


class ScreenFormatError(ScreenError):
    """A screen table is missing, malformed or inconsistent (names the file and rows)."""


class ImageReadError(ScreenError):
    """An image file is missing, corrupt, truncated or of an unexpected shape (names the file)."""


class DataValidationError(ScreenError):
    """Great Expectations validation of a screen failed (names each failing expectation)."""

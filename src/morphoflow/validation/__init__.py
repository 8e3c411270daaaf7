"""Great Expectations validation of screens (integration layer: imports great_expectations)."""

from morphoflow.validation.screen_suites import ValidationConfig, validate_screen

__all__ = ["ValidationConfig", "validate_screen"]

"""pytest-lambda-context."""

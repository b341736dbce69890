"""Registering a model: built-in models, artifacts and bundles checked without torch."""

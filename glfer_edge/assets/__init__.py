"""Bundled demo model and its card."""

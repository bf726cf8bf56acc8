"""Compatibility with other tools' files."""

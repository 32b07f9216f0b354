"""Command-line entry points; imports anything, imported by nothing."""

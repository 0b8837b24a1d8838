"""Seeded simulators that write realistic event files for the use cases."""

"""Timings and comparisons run from a checkout (python benchmarks/NAME.py); not part of the installed package."""

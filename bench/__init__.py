"""Benchmarks: figures and ratios against peers, never asserted in tests."""

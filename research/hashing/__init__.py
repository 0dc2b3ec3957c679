"""Hashing experiments: benchmark runs, protocols of the report, synthetic features, plots."""

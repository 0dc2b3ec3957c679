"""Measuring heads and backends on labelled datasets (``cach eval``); not on the search path."""

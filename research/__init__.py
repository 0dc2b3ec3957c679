"""Research tooling behind docs/results.md and the shipped heads' model card.

Not part of the QGIS plugin: the benchmark, the report writer, synthetic data, plotting and the
experiment variants only the report uses. Run from a repository checkout (``make results``); needs
``requirements/research.txt`` on top of the runtime requirements.
"""

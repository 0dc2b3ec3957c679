"""Services that each own one resource: loaded models, open indexes, the caption bank; and the
pure query-vector function between them. ``pipeline.py`` composes them."""

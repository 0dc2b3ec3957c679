"""Processing provider: indexing and text search in the toolbox, batch mode and models."""

"""Model wrappers: load packaged weights once, warm up, run behind batchers."""

"""gpedge.evaluate."""

"""gpedge.bench."""

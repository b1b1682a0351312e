"""gpedge.data."""

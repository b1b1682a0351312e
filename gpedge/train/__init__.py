"""gpedge.train."""

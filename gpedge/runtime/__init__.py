"""gpedge.runtime."""

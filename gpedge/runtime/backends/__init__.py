"""gpedge.runtime.backends."""

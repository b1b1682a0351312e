"""gpedge.models."""

"""gpedge.commands."""

"""gpedge export (being written)."""


def main() -> None:
    """export (not yet available)."""
    raise SystemExit("not yet available")

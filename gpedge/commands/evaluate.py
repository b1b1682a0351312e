"""gpedge evaluate (being written)."""


def main() -> None:
    """evaluate (not yet available)."""
    raise SystemExit("not yet available")

"""gpedge train (being written)."""


def main() -> None:
    """train (not yet available)."""
    raise SystemExit("not yet available")

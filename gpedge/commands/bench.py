"""gpedge bench (being written)."""


def main() -> None:
    """bench (not yet available)."""
    raise SystemExit("not yet available")

"""gpedge infer (being written)."""


def main() -> None:
    """infer (not yet available)."""
    raise SystemExit("not yet available")

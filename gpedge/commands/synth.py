"""gpedge synth (being written)."""


def main() -> None:
    """synth (not yet available)."""
    raise SystemExit("not yet available")

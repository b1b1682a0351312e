"""The ``gpedge`` command line (installed as ``gpedge.cli``).

Each command lives in ``gpedge/commands/<name>.py``; this module only assembles them and
turns user errors into one clear line on stderr with exit code 2.
"""
from __future__ import annotations

import sys

import typer

from gpedge._version import __version__
from gpedge.errors import reporting

app = typer.Typer(
    name="gpedge",
    help="Inherently-explainable brain-tumour classifiers: train, export (ONNX/TensorRT), infer, evaluate, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpedge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """gpedge: GP-UNet, GP-ShuffleUNet and GP-ReconResNet from training to the scanner."""


def _register() -> None:
    from gpedge.commands import bench, evaluate, export, infer, serve, synth, train, triton

    app.command("synth", help=synth.main.__doc__)(synth.main)
    app.command("train", help=train.main.__doc__)(train.main)
    app.command("export", help=export.main.__doc__)(export.main)
    app.command("triton", help=triton.main.__doc__)(triton.main)
    app.command("infer", help=infer.main.__doc__)(infer.main)
    app.command("evaluate", help=evaluate.main.__doc__)(evaluate.main)
    app.command("bench", help=bench.main.__doc__)(bench.main)
    app.command("serve", help=serve.main.__doc__)(serve.main)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(reporting(app))


if __name__ == "__main__":
    main()

"""The ``gpedge`` command line (installed as ``gpedge.cli``).

Each command lives in ``gpedge/commands/<name>.py``; this module only assembles them and
turns user errors into one clear line on stderr with exit code 2.
"""
from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

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


def _help(command: Callable[..., object]) -> str:
    """A command's docstring as help text: paragraphs kept, the line breaks inside them removed.

    Typer prints a paragraph's line breaks as they are, which ragged-wraps them at any terminal width.
    """
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def _register() -> None:
    from gpedge.commands import bench, evaluate, export, infer, serve, synth, train, triton

    app.command("synth", help=_help(synth.main))(synth.main)
    app.command("train", help=_help(train.main))(train.main)
    app.command("export", help=_help(export.main))(export.main)
    app.command("triton", help=_help(triton.main))(triton.main)
    app.command("infer", help=_help(infer.main))(infer.main)
    app.command("evaluate", help=_help(evaluate.main))(evaluate.main)
    app.command("bench", help=_help(bench.main))(bench.main)
    app.command("serve", help=_help(serve.main))(serve.main)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(reporting(app))


if __name__ == "__main__":
    main()

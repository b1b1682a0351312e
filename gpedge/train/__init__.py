"""Training of the GP networks (``gpedge train``): needs the ``[train]`` extra (torch)."""
from gpedge.train.options import TrainOptions
from gpedge.train.trainer import train

__all__ = ["TrainOptions", "train"]

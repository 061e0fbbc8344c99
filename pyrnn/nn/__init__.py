"""Building blocks with the layers' contract: Linear, Embedding, Dropout, activations, LayerNorm,
GroupNorm, Sequential."""
from .layers import (ACTIVATIONS, Dropout, Embedding, Identity, LeakyReLU, Linear, ReLU, Sigmoid,
                     Tanh, activation)
from .module import Module, Sequential
from .norm import GroupNorm, LayerNorm

__all__ = ["Module", "Sequential", "Linear", "Embedding", "Dropout", "Identity", "Tanh", "Sigmoid",
           "ReLU", "LeakyReLU", "LayerNorm", "GroupNorm", "activation", "ACTIVATIONS"]

"""Building blocks with the layers' contract: Linear, Embedding, Dropout, activations, Sequential."""
from .layers import (ACTIVATIONS, Dropout, Embedding, Identity, LeakyReLU, Linear, ReLU, Sigmoid,
                     Tanh, activation)
from .module import Module, Sequential

__all__ = ["Module", "Sequential", "Linear", "Embedding", "Dropout", "Identity", "Tanh", "Sigmoid",
           "ReLU", "LeakyReLU", "activation", "ACTIVATIONS"]

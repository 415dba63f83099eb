"""tfcli: train Transformers from scratch, from raw text to a trained model and its outputs."""

__version__ = "0.1.0"

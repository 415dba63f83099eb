"""Checkpoints: what a trained model is on disk, and the operations on a run's checkpoints.

files.py      the file format: one .safetensors file (weights + JSON metadata), the training
              state beside it (.state.pt, weights_only), loading a model back
steps.py      a run's step checkpoints: list, best / latest, pruning, the best link
averaging.py  element-wise mean of several checkpoints (tfcli average)
warmstart.py  copy a masked-LM's embeddings and encoder into a new translation model
"""

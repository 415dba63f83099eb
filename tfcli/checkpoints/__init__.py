"""Checkpoints: what a trained model is on disk, and the operations on a run's checkpoints. This
package owns the file format (one self-contained .safetensors file: weights plus JSON metadata
with the model spec, recipe and tokenizer; the training state beside it), loading a model back
from it, finding a run's step and best checkpoints, pruning, averaging and warm starts. Where
the files of a run lie and how they are named is tfcli.run_dir's; the loop that writes them
during training is tfcli.training's.

    files.py      the file format: save / read (header only) / load a model, the training state
                  (.state.pt, weights_only), write_safetensors (the documented fault hook)
    steps.py      a run's step checkpoints: list, best / latest, pruning, the best link
    averaging.py  element-wise mean of several checkpoints (tfcli average)
    warmstart.py  copy a masked-LM's embeddings and encoder into a new translation model
    finetune.py   a new run from a checkpoint's weights and tokenizer (train.init_from)
    compat.py     the architecture settings a checkpoint must share with a recipe, by name
"""

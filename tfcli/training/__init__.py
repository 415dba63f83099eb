"""Training: one shared loop (`loop.train`) and one objective per kind of model.

    loop.py         the loop: accumulation, clipping, schedule, evaluation, checkpoints, resume, faults
    optim.py        Adam/AdamW and the learning-rate schedules (inverse_sqrt, cosine, constant)
    seq2seq.py      Seq2SeqObjective: token-budget batches, label-smoothed loss, loss/BLEU/chrF
    mlm.py          MLMObjective: masked-LM batches, loss and validation
    masking.py      BERT-style token masking
    distributed.py  devices, torch.distributed (DDP), per-rank RNG state
    display.py      the live progress line, log lines, metrics.jsonl and TensorBoard

Submodules import torch; commands import them inside their bodies.
"""

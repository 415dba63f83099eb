"""Training: one shared loop (`loop.train`) and one objective per kind of model.

    loop.py         the loop: accumulation, clipping, schedule, evaluation, checkpoints, stopping
    state.py        training state: progress, batch position, save beside checkpoints, --resume
    faults.py       non-finite updates, out-of-memory messages, Ctrl-C / SIGTERM
    meter.py        per-log-interval sums on the device -> the train lines of metrics.jsonl
    allocator.py    CPU: glibc keeps freed memory, so a step's large tensors cost no page faults
    optim.py        Adam/AdamW and the learning-rate schedules (inverse_sqrt, cosine, constant)
    seq2seq.py      Seq2SeqObjective: token-budget batches, label-smoothed loss, loss/BLEU/chrF
    mlm.py          MLMObjective: masked-LM batches, loss and validation
    masking.py      BERT-style token masking
    distributed.py  devices, torch.distributed (DDP), per-rank RNG state
    display.py      the live progress line, log lines, metrics.jsonl and TensorBoard

Submodules import torch; commands import them inside their bodies.
"""

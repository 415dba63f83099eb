"""Training: turning a recipe and its encoded data into checkpoints, for every kind of model.

This package owns a training run from the moment a command hands it a recipe until the summary
comes back: assembling the run (setup.py, both kinds side by side), the one loop every kind
shares, what is saved for an exact --resume, the faults a long run meets, and one objective
module per kind of model (`Objective` is the contract between the loop and them). It does not
own the file format of checkpoints or their listing and pruning (tfcli.checkpoints), the model
(tfcli.model), the data (tfcli.data) or rendering the summary (tfcli.commands).

    setup.py          assembles a run: checks, process group, run dir, data, seeded model,
                      announcement, the loop; train_seq2seq / pretrain_mlm side by side
    objective.py      the Objective protocol: batches, loss, validation of one kind of model
    loop.py           the loop (Trainer, train): accumulation, clipping, schedule, stopping
    validation.py     evaluation without disturbing training; best and early-stopping patience
    checkpointing.py  writing step checkpoints with their state, best, pruning (rank 0)
    state.py          training state: progress, batch position, save beside checkpoints, --resume
    faults.py         non-finite updates, out-of-memory messages, Ctrl-C / SIGTERM
    meter.py          per-log-interval sums on the device -> the train lines of metrics.jsonl
    display.py        the live progress line, log lines, metrics.jsonl and TensorBoard
    optim.py          Adam/AdamW, the learning-rate schedules, gradient scaling and clipping
    distributed.py    torch.distributed (DDP), batches to the device, per-rank RNG state
    seq2seq.py        Seq2SeqObjective: token-budget batches, label-smoothed loss, loss/BLEU/chrF
    mlm.py            MLMObjective: masked-LM examples, batches, loss and validation
    masking.py        BERT-style token masking

Submodules import torch; commands import them inside their bodies.
"""

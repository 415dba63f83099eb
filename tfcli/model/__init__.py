"""The model: one Transformer core for translation (EncoderDecoder) and masked-LM pretraining
(MaskedLM), its configuration, and the one builder that turns a configuration into modules.
This package owns the architecture's fields and their checks (config.py), the layers, and the
initialisation; recipes, checkpoints and training only hand it a ModelSpec. `config.py` imports
without torch (checkpoint metadata, `inspect`); every other module is torch.

    config.py       Architecture (every architecture field once, with help texts and checks),
                    ModelSpec (architecture + kind, vocabulary sizes, pad id; flat JSON in
                    checkpoints), spec_from_recipe, the closed choices (ModelKind, Positions...)
    positions.py    sinusoidal, learned and rotary positions
    dropout.py      dropout with a cheaper mask on CPU
    embeddings.py   token embeddings (scaled) + additive positions, then dropout
    attention.py    multi-head attention on SDPA and the masks it takes (one convention)
    relative.py     relative position representations (Shaw et al. 2018), an attention core
    alibi.py        ALiBi linear distance biases (Press et al. 2022), folded into the mask
    linformer.py    Linformer keys/values projected to a fixed length (Wang et al. 2020), a core
    additive.py     additive (Bahdanau) attention scores, an attention core
    feedforward.py  the position-wise feed-forward network
    stack.py        TransformerStack: the encoder and decoder are two settings of one stack
    cache.py        the key/value cache for incremental decoding
    seq2seq.py      EncoderDecoder (encode / decode) and its Generator
    mlm.py          MaskedLM and its prediction head
    build.py        build_model (the only place that knows hyperparameters), init, parameter counts

Reading order: positions -> dropout -> embeddings -> attention -> relative / alibi / linformer /
additive -> feedforward -> stack -> cache -> seq2seq / mlm -> config -> build. The variants are
small modules build.py picks from a closed table; the paper's model runs none of them.
"""

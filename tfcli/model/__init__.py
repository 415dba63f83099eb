"""One Transformer core for translation (EncoderDecoder) and masked-LM pretraining (MaskedLM).

Reading order: positions -> dropout -> embeddings -> attention (+ masks) -> feedforward -> stack
-> cache -> seq2seq / mlm -> config -> build.

`ModelSpec` / `spec_from_recipe` import without torch (checkpoint metadata, inspect); the
modules load torch on first use of their names here.
"""

"""Shared fixtures of the tfcli.data tests: small tokenizers trained on the encoding assets, and
the ids the tokenizer itself gives (the reference every encoder output is checked against)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ASSETS = Path(__file__).parents[1] / "assets"
TRAIN_SRC, TRAIN_TGT = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"


@pytest.fixture(scope="session")
def make_tokenizer() -> Callable[..., Path]:
    """make_tokenizer(directory, name, **cfg) -> DIR/NAME.json: a tokenizer trained on the
    encoding assets (vocab_size 300, min_frequency 1 unless `cfg` says otherwise)."""
    from tfcli.recipe.schema import TokenizerConfig
    from tfcli.tokenizer.training import train_tokenizer
    from tfcli.tokenizer.vocab import save_tokenizer

    def make(directory: Path, name: str, **cfg) -> Path:
        c = TokenizerConfig(**{"vocab_size": 300, "min_frequency": 1, **cfg})
        files = [TRAIN_SRC, TRAIN_TGT, ASSETS / "tok_corpus.txt"]
        path = directory / f"{name}.json"
        save_tokenizer(train_tokenizer(files, c, show_progress=False), path)
        return path

    return make


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory, make_tokenizer) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok"), "bpe")


@pytest.fixture(scope="session")
def reference() -> Callable[[Path, list[str]], list[list[int]]]:
    """reference(tok_path, lines): the tokenizer's own ids per line, without specials."""
    from tokenizers import Tokenizer

    def ids(tok_path: Path, lines: list[str]) -> list[list[int]]:
        tok = Tokenizer.from_file(str(tok_path))
        return [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]

    return ids

"""tfcli.pipeline: earlier stages run when their output is missing or stale, and only then."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tfcli import pipeline
from tfcli.data.split import ParallelData, TextData, open_split
from tfcli.errors import DataError, RecipeError
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe import schema
from tfcli.tokenizer.staleness import file_sha256

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture()
def files(tmp_path) -> dict[str, Path]:
    """Copies of the assets (tests modify them): train/valid pairs and monolingual text."""
    src = (ASSETS / "enc_train.src").read_text(encoding="utf-8").splitlines()
    tgt = (ASSETS / "enc_train.tgt").read_text(encoding="utf-8").splitlines()
    out = {}
    for name, lines in {
        "train.src": src[:100],
        "train.tgt": tgt[:100],
        "valid.src": src[100:],
        "valid.tgt": tgt[100:],
    }.items():
        out[name] = tmp_path / name
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _recipe(files: dict[str, Path], tmp_path: Path, **extra: object) -> schema.Recipe:
    raw = {
        "run_dir": str(tmp_path / "run"),
        "data": {
            "src": [str(files["train.src"])],
            "tgt": [str(files["train.tgt"])],
            "valid_src": [str(files["valid.src"])],
            "valid_tgt": [str(files["valid.tgt"])],
        },
        "tokenizer": {"vocab_size": 300, "min_frequency": 1},
    }
    for key, value in extra.items():
        section, _, name = key.partition("__")
        if name:
            raw.setdefault(section, {})[name] = value
        else:
            raw[section] = value
    return recipe_mod.from_dict(raw)


def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_first_run_trains_and_encodes_then_nothing_to_do(files, tmp_path):
    r = _recipe(files, tmp_path)
    toks = pipeline.ensure_tokenizer(r, kind="parallel")
    run = tmp_path / "run"
    assert toks == {"src": run / "tokenizer.json", "tgt": run / "tokenizer.json"}
    assert (run / "tokenizer.meta.json").is_file()
    splits = pipeline.ensure_encoded(r, kind="parallel")
    assert splits == {"train": run / "data" / "train", "valid": run / "data" / "valid"}
    train, valid = open_split(splits["train"]), open_split(splits["valid"])
    assert (
        isinstance(train, ParallelData) and len(train) == 100 - train.meta["dropped"]["too_short"]
    )
    assert len(valid) == 28  # valid keeps every pair the model can hold
    stamps = [
        _stamp(toks["src"]),
        _stamp(splits["train"] / "meta.json"),
        _stamp(splits["valid"] / "meta.json"),
    ]
    assert pipeline.ensure_tokenizer(r, kind="parallel") == toks
    assert pipeline.ensure_encoded(r, kind="parallel") == splits
    assert [
        _stamp(toks["src"]),
        _stamp(splits["train"] / "meta.json"),
        _stamp(splits["valid"] / "meta.json"),
    ] == stamps
    assert sorted(p.name for p in (run / "data").iterdir()) == ["train", "valid"]


def test_a_new_tokenizer_re_encodes_every_split(files, tmp_path):
    r = _recipe(files, tmp_path)
    pipeline.ensure_tokenizer(r, kind="parallel")
    splits = pipeline.ensure_encoded(r, kind="parallel")
    old = open_split(splits["train"]).meta["tokenizer_sha256"]
    r2 = _recipe(
        files, tmp_path, tokenizer={"vocab_size": 300, "min_frequency": 1, "lowercase": True}
    )
    pipeline.ensure_tokenizer(r2, kind="parallel")
    new_sha = file_sha256(tmp_path / "run" / "tokenizer.json")
    assert new_sha != old["src"]
    pipeline.ensure_encoded(r2, kind="parallel")
    for split in ("train", "valid"):
        assert open_split(splits[split]).meta["tokenizer_sha256"] == {
            "src": new_sha,
            "tgt": new_sha,
        }


def test_changed_input_or_filters_re_encode_only_that_split(files, tmp_path):
    r = _recipe(files, tmp_path, tokenizer={"vocab_size": 300, "min_frequency": 1, "path": None})
    pipeline.ensure_tokenizer(r, kind="parallel")
    splits = pipeline.ensure_encoded(r, kind="parallel")
    valid_stamp = _stamp(splits["valid"] / "meta.json")
    tok_stamp = _stamp(tmp_path / "run" / "tokenizer.json")
    # a custom tokenizer path keeps the tokenizer fixed while the training text changes
    shutil.copy(tmp_path / "run" / "tokenizer.json", tmp_path / "fixed.json")
    r = _recipe(files, tmp_path, tokenizer={"path": str(tmp_path / "fixed.json")})
    with files["train.src"].open("a", encoding="utf-8") as f:
        f.write("one more line\n")
    with files["train.tgt"].open("a", encoding="utf-8") as f:
        f.write("une ligne de plus\n")
    before = len(open_split(splits["train"]))
    pipeline.ensure_tokenizer(r, kind="parallel")
    pipeline.ensure_encoded(r, kind="parallel")
    assert len(open_split(splits["train"])) == before + 1
    assert _stamp(splits["valid"] / "meta.json") == valid_stamp
    assert _stamp(tmp_path / "run" / "tokenizer.json") == tok_stamp
    r3 = _recipe(files, tmp_path, tokenizer={"path": str(tmp_path / "fixed.json")}, data__max_len=8)
    pipeline.ensure_encoded(r3, kind="parallel")
    meta = open_split(splits["train"]).meta
    assert meta["filters"]["max_len"] == 8 and meta["dropped"]["too_long"] > 0
    assert _stamp(splits["valid"] / "meta.json") == valid_stamp


def test_a_given_tokenizer_path_is_used_and_none_is_trained(files, tmp_path):
    r = _recipe(files, tmp_path)
    toks = pipeline.ensure_tokenizer(r, kind="parallel")
    mine = tmp_path / "mine.json"
    shutil.copy(toks["src"], mine)
    r2 = _recipe(files, tmp_path, run_dir=str(tmp_path / "run2"), tokenizer={"path": str(mine)})
    assert pipeline.ensure_tokenizer(r2, kind="parallel") == {"src": mine, "tgt": mine}
    assert not (tmp_path / "run2" / "tokenizer.json").exists()
    splits = pipeline.ensure_encoded(r2, kind="parallel")
    assert (
        open_split(splits["train"]).meta["tokenizer_sha256"]["src"]
        == open_split(pipeline.ensure_encoded(r, kind="parallel")["train"]).meta[
            "tokenizer_sha256"
        ]["src"]
    )
    r3 = _recipe(files, tmp_path, tokenizer={"path": str(tmp_path / "nope.json")})
    with pytest.raises(Exception, match="nope.json"):
        pipeline.ensure_tokenizer(r3, kind="parallel")


def test_text_kind(files, tmp_path):
    r = _recipe(
        files,
        tmp_path,
        data={"text": [str(files["train.src"])], "valid_text": [str(files["valid.tgt"])]},
    )
    toks = pipeline.ensure_tokenizer(r, kind="text")
    assert toks == {"text": tmp_path / "run" / "tokenizer.json"}
    splits = pipeline.ensure_encoded(r, kind="text")
    assert set(splits) == {"train", "valid"}
    assert isinstance(open_split(splits["train"]), TextData)
    bad = _recipe(
        files,
        tmp_path,
        data={"text": [str(files["train.src"])]},
        tokenizer={"joint": False},
        model={"share_embeddings": False},
    )
    with pytest.raises(RecipeError, match="tokenizer.joint"):
        pipeline.ensure_tokenizer(bad, kind="text")


def test_missing_inputs_name_the_recipe_key(files, tmp_path):
    r = _recipe(files, tmp_path)
    pipeline.ensure_tokenizer(r, kind="parallel")
    no_src = _recipe(files, tmp_path, data={"text": [str(files["train.src"])]})
    with pytest.raises(DataError, match=r"set data\.src and data\.tgt"):
        pipeline.ensure_encoded(no_src, kind="parallel")
    half = _recipe(
        files,
        tmp_path,
        data={
            "src": [str(files["train.src"])],
            "tgt": [str(files["train.tgt"])],
            "valid_src": [str(files["valid.src"])],
        },
    )
    with pytest.raises(DataError, match=r"data\.valid_src is set but data\.valid_tgt is not"):
        pipeline.ensure_encoded(half, kind="parallel")
    no_text = _recipe(files, tmp_path)
    with pytest.raises(DataError, match=r"set data\.text"):
        pipeline.ensure_encoded(no_text, kind="text")
    gone = _recipe(
        files,
        tmp_path,
        data={"src": [str(tmp_path / "nope.src")], "tgt": [str(files["train.tgt"])]},
    )
    with pytest.raises(DataError, match="nope.src"):
        pipeline.ensure_encoded(gone, kind="parallel")


def test_encoding_needs_the_tokenizer_first(files, tmp_path):
    with pytest.raises(DataError, match="tokenizer not found.*tfcli tokenize"):
        pipeline.ensure_encoded(_recipe(files, tmp_path), kind="parallel")

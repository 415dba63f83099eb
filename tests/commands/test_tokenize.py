"""`tfcli tokenize` end to end: training from files or a recipe, summary, --show, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfcli.cli import cli
from tfcli.errors import DataError, RecipeError, TfcliError, TokenizerError
from tfcli.recipe.schema import TokenizerConfig
from tfcli.tokenizer.vocab import SPECIALS, load_tokenizer

CORPUS = Path(__file__).parents[1] / "assets" / "tok_corpus.txt"


def invoke(*args: str):
    return CliRunner().invoke(cli, ["tokenize", *args])


def test_train_from_files_writes_tokenizer_and_summary(tmp_path):
    out = tmp_path / "tok" / "tokenizer.json"
    result = invoke(str(CORPUS), "--vocab-size", "300", "-o", str(out))
    assert result.exit_code == 0, result.output
    for line in (
        "vocab size",
        "lines",
        "characters",
        "tokens / line",
        "unknown-token rate",
        "time",
    ):
        assert line in result.stderr
    assert "16" in result.stderr  # lines in the fixture
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "tokenizer.json",
        "tokenizer.meta.json",
        "tokenizer.vocab.txt",
    ]
    tok = load_tokenizer(out)
    assert tok.get_vocab_size() <= 300 + 200  # the alphabet may exceed a tiny vocab_size
    meta = json.loads((out.parent / "tokenizer.meta.json").read_text(encoding="utf-8"))
    assert meta["sides"]["src"]["fingerprint"]["config"]["vocab_size"] == 300
    assert meta["stats"]["src"]["lines"] == 16


def test_flags_map_onto_recipe_keys(tmp_path):
    out = tmp_path / "t.json"
    args = ["--type", "wordpiece", "--pre-tokenizer", "byte_level", "--lowercase", "--no-nfkc"]
    result = invoke(str(CORPUS), *args, "--vocab-size", "400", "--max-lines", "5", "-o", str(out))
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "t.meta.json").read_text(encoding="utf-8"))["sides"]["src"]
    cfg = cfg["fingerprint"]["config"]
    assert (cfg["type"], cfg["pre_tokenizer"], cfg["lowercase"], cfg["nfkc"]) == (
        "wordpiece",
        "byte_level",
        True,
        False,
    )
    assert cfg["max_lines"] == 5
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["model"]["type"] == "WordPiece"
    assert data["pre_tokenizer"]["pretokenizers"][0]["type"] == "ByteLevel"


def test_recipe_data_and_separate_vocabularies(tmp_path):
    (tmp_path / "train.src").write_text("the cat sat\nthe dog ran\n" * 4, encoding="utf-8")
    (tmp_path / "train.tgt").write_text("le chat assis\nle chien courait\n" * 4, encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "run_dir: run\ndata:\n  src: [train.src]\n  tgt: [train.tgt]\n"
        "tokenizer:\n  vocab_size: 60\nmodel:\n  share_embeddings: false\n",
        encoding="utf-8",
    )
    result = invoke(str(recipe), "--separate")
    assert result.exit_code == 0, result.output
    assert "source" in result.stderr and "target" in result.stderr
    run = tmp_path / "run"
    names = sorted(p.name for p in run.iterdir())
    assert names == [
        "tokenizer.meta.json",
        "tokenizer.src.json",
        "tokenizer.src.vocab.txt",
        "tokenizer.tgt.json",
        "tokenizer.tgt.vocab.txt",
    ]
    assert load_tokenizer(run / "tokenizer.tgt.json").token_to_id("h") is not None
    assert load_tokenizer(run / "tokenizer.src.json").token_to_id("h") is not None  # t"h"e
    assert load_tokenizer(run / "tokenizer.src.json").token_to_id("u") is None  # only in tgt

    joint = invoke(str(recipe), "--set", "model.share_embeddings=true")
    assert joint.exit_code == 0, joint.output
    assert (run / "tokenizer.json").is_file()


def test_show_prints_pieces_and_ids(tmp_path):
    out = tmp_path / "tokenizer.json"
    assert invoke(str(CORPUS), "--vocab-size", "300", "-o", str(out)).exit_code == 0
    result = invoke("--tokenizer", str(out), "--show", "lower newest", "--show", "日本")
    assert result.exit_code == 0, result.output
    tok = load_tokenizer(out)
    for text in ("lower newest", "日本"):
        for piece, i in zip(tok.encode(text).tokens, tok.encode(text).ids, strict=True):
            assert piece in result.stdout and str(i) in result.stdout
    assert "decodes back exactly" in result.stderr
    # -o doubles as the tokenizer --show reads.
    assert invoke("-o", str(out), "--show", "low").exit_code == 0


def test_show_without_tokenizer_fails_clearly(tmp_path):
    result = invoke("--show", "text")
    assert isinstance(result.exception, TokenizerError)
    assert "tokenizer not found" in str(result.exception)


def test_no_partial_output_on_failure(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n" * 100 + b"bad \xff line\n")
    out = tmp_path / "out" / "tokenizer.json"
    result = invoke(str(bad), "-o", str(out))
    assert isinstance(result.exception, DataError)
    assert "bad.txt:101: invalid UTF-8" in str(result.exception)
    assert list(out.parent.iterdir()) == []

    result = invoke(str(CORPUS), "--vocab-size", "3", "-o", str(out))
    # refused with the recipe's other checks now, before any text is read
    assert isinstance(result.exception, RecipeError) and "at least 6" in str(result.exception)
    assert list(out.parent.iterdir()) == []


def test_files_and_separate_conflict(tmp_path):
    result = invoke(str(CORPUS), "--separate")
    assert isinstance(result.exception, TfcliError) and "--separate" in str(result.exception)


def test_no_inputs_says_where_to_put_them(tmp_path):
    result = invoke()
    assert isinstance(result.exception, DataError)
    assert "data.src" in str(result.exception)


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_output_dir_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = _run_cli(str(CORPUS), "-o", str(locked / "tokenizer.json"))
    finally:
        locked.chmod(0o700)
    _assert_one_line_error(proc, "not writable")


def test_output_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    proc = _run_cli(str(CORPUS), "-o", str(blocker / "sub" / "tokenizer.json"))
    _assert_one_line_error(proc, "cannot create output directory")
    assert blocker.read_text(encoding="utf-8") == "x"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("tfcli")
    return subprocess.run(
        [str(exe), "tokenize", *args], capture_output=True, text=True, timeout=120
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert proc.stdout == ""


def test_specials_listed_first_in_vocab_dump(tmp_path):
    out = tmp_path / "tokenizer.json"
    assert invoke(str(CORPUS), "--vocab-size", "300", "-o", str(out)).exit_code == 0
    lines = (tmp_path / "tokenizer.vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:5] == [f"{i}\t{s}" for i, s in enumerate(SPECIALS)]


def test_first_argument_is_a_recipe_only_when_it_looks_like_one(tmp_path):
    bundled = invoke("transformer-small")  # a bundled recipe: its placeholder data is missing
    assert isinstance(bundled.exception, DataError)
    assert "data/train.src" in str(bundled.exception)
    (tmp_path / "a.txt").write_text("one two three\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("four five six\n", encoding="utf-8")
    result = invoke("a.txt", "b.txt", "--vocab-size", "40", "-o", "tok.json")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "tok.meta.json").read_text(encoding="utf-8"))
    inputs = meta["sides"]["src"]["fingerprint"]["inputs"]
    assert [Path(i["path"]).name for i in inputs] == ["a.txt", "b.txt"]


def test_trainer_sentencepiece_writes_a_tfcli_tokenizer(tmp_path):
    out = tmp_path / "tok" / "tokenizer.json"
    result = invoke(
        str(CORPUS), "--trainer", "sentencepiece", "--vocab-size", "400", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "sentencepiece" in result.stderr
    tok = load_tokenizer(out)
    meta = json.loads(out.with_name("tokenizer.meta.json").read_text(encoding="utf-8"))
    assert meta["sides"]["src"]["fingerprint"]["config"]["trainer"] == "sentencepiece"
    assert out.with_name("tokenizer.spm.model").is_file()  # kept for `tfcli encode`
    assert tok.decode(tok.encode("the cat").ids) == "the cat"


def test_from_spm_imports_a_model_and_refuses_conflicting_specials(tmp_path):
    import io

    import sentencepiece as spm

    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    for name, ids in (("good", dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3)), ("bad", {})):
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buf,
            vocab_size=400,
            minloglevel=2,
            hard_vocab_limit=False,
            user_defined_symbols=["<mask>"] if ids else [],
            **ids,
        )
        (tmp_path / f"{name}.model").write_bytes(buf.getvalue())
    out = tmp_path / "imported.json"
    result = invoke("--from-spm", str(tmp_path / "good.model"), "-o", str(out))
    assert result.exit_code == 0, result.output
    from tfcli.tokenizer.staleness import retrain_reason

    other = tmp_path / "other.txt"
    other.write_text("text the import never saw\n", encoding="utf-8")
    paths = {"src": out, "tgt": out}
    assert retrain_reason(paths, {"src": [other], "tgt": [other]}, TokenizerConfig()) is None
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "good.model"))
    tok = load_tokenizer(out)
    for line in lines:
        assert tok.encode(line, add_special_tokens=False).ids == sp.encode(line)
    result = invoke("--from-spm", str(tmp_path / "bad.model"), "-o", str(out))
    assert isinstance(result.exception, TokenizerError)
    assert "ids 0-4" in str(result.exception) and "\n" not in str(result.exception)

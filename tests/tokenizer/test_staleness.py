"""tfcli.tokenizer.staleness: tokenizer.meta.json's path and content, and retrain_reason: current
when nothing changed (a meta file in the documented format included), and each change named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tfcli.recipe.schema import TokenizerConfig
from tfcli.run_dir import RunDir, side_paths
from tfcli.tokenizer.staleness import file_sha256, meta_path, retrain_reason
from tfcli.tokenizer.training import build_tokenizers


def test_meta_path_is_shared_by_a_tokenizer_set():
    """One tokenizer.meta.json per set: the joint file and both separate sides map to it (the
    run directory's own names are tested in tests/test_run_dir.py)."""
    run = RunDir(Path("runs/x"))
    for joint in (True, False):
        for path in run.tokenizers(joint).values():
            assert meta_path(path) == run.root / "tokenizer.meta.json"
    assert meta_path(side_paths(Path("o/my.json"), False)["tgt"]) == Path("o/my.meta.json")
    assert meta_path(Path("o/my.json")) == Path("o/my.meta.json")


def test_build_and_staleness(tmp_path):
    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("the cat sat\nthe dog ran\n" * 5, encoding="utf-8")
    tgt.write_text("le chat assis\nle chien courait\n" * 5, encoding="utf-8")
    cfg = TokenizerConfig(vocab_size=80)
    paths = RunDir(tmp_path / "run").tokenizers(joint=True)
    inputs = {"src": [src, tgt], "tgt": [src, tgt]}
    build_tokenizers(inputs, cfg, paths, show_progress=False)
    meta = json.loads(meta_path(paths["src"]).read_text(encoding="utf-8"))
    assert meta["joint"] is True and meta["sides"]["src"]["sha256"] == file_sha256(paths["src"])
    assert retrain_reason(paths, inputs, cfg) is None

    assert "tokenizer.vocab_size" in retrain_reason(
        paths, inputs, dataclasses.replace(cfg, vocab_size=90)
    )
    assert retrain_reason(paths, inputs, dataclasses.replace(cfg, path="elsewhere.json")) is None
    assert "training files changed" in retrain_reason(paths, {"src": [src], "tgt": [src]}, cfg)
    tgt.write_text("le chat assis\n", encoding="utf-8")
    assert "train.tgt changed" in retrain_reason(paths, inputs, cfg)
    build_tokenizers(inputs, cfg, paths, show_progress=False)
    assert retrain_reason(paths, inputs, cfg) is None
    paths["src"].write_text(paths["src"].read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert "modified after training" in retrain_reason(paths, inputs, cfg)
    meta_path(paths["src"]).unlink()
    assert "missing" in retrain_reason(paths, inputs, cfg)


def test_separate_vocabularies_share_one_record(tmp_path):
    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("aaa bbb\n" * 5, encoding="utf-8")
    tgt.write_text("xxx yyy\n" * 5, encoding="utf-8")
    cfg = TokenizerConfig(vocab_size=40, joint=False)
    paths = RunDir(tmp_path).tokenizers(joint=False)
    build_tokenizers({"src": [src], "tgt": [tgt]}, cfg, paths, show_progress=False)
    assert retrain_reason(paths, {"src": [src], "tgt": [tgt]}, cfg) is None
    joint = RunDir(tmp_path).tokenizers(joint=True)
    assert "does not exist" in retrain_reason(joint, {"src": [src], "tgt": [tgt]}, cfg)
    paths["tgt"].unlink()
    assert "tokenizer.tgt.json does not exist" in retrain_reason(
        paths, {"src": [src], "tgt": [tgt]}, cfg
    )


def test_a_meta_file_in_the_documented_format_is_current(tmp_path):
    """tokenizer.meta.json as runs made by earlier versions hold it, written here by hand from
    the documented layout (not by write_training_meta): nothing changed, so no retraining."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat\nthe dog ran\n" * 5, encoding="utf-8")
    cfg = TokenizerConfig(vocab_size=60)
    paths = RunDir(tmp_path / "run").tokenizers(joint=True)
    build_tokenizers({"src": [corpus], "tgt": [corpus]}, cfg, paths, show_progress=False)
    st = corpus.stat()
    config = {
        "type": "bpe",
        "vocab_size": 60,
        "min_frequency": 2,
        "nfkc": True,
        "lowercase": False,
        "pre_tokenizer": "metaspace",
        "joint": True,
        "max_lines": 0,
    }
    side = {
        "tokenizer": "tokenizer.json",
        "sha256": file_sha256(paths["src"]),
        "fingerprint": {
            "config": config,
            "inputs": [
                {"path": str(corpus.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            ],
        },
    }
    meta = {"format": "tfcli-tokenizer-meta", "version": 1, "joint": True}
    meta["sides"] = {"src": side, "tgt": side}
    meta_path(paths["src"]).write_text(json.dumps(meta), encoding="utf-8")
    assert retrain_reason(paths, {"src": [corpus], "tgt": [corpus]}, cfg) is None
    assert "tokenizer.min_frequency" in retrain_reason(
        paths, {"src": [corpus], "tgt": [corpus]}, dataclasses.replace(cfg, min_frequency=3)
    )

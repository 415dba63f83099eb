"""What `summarize` reports, as plain data: parameter counts from the safetensors header, the
state of best.safetensors, the metrics file, length histograms, runs before training, and the
one-line refusals. (How `tfcli inspect` renders it: tests/commands/test_inspect.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.data.encoding import encode_parallel, encode_text
from tfcli.data.split import open_split
from tfcli.errors import TfcliError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.report.summary import summarize
from tfcli.run_dir import RunDir, state_path

ASSETS = Path(__file__).parents[1] / "assets"
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]


def save_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = (ASSETS / "enc_train.src").read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=80, special_tokens=SPECIALS))
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return tok


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    """Steps 10 and 20 (best = 10, each with its state), encoded data, a metrics.jsonl whose last
    line a kill cut short."""
    run = RunDir(tmp_path_factory.mktemp("summary") / "run")
    tok = save_tokenizer(run.tokenizer)
    src, tgt = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"
    encode_parallel(
        [src], [tgt], run.tokenizer, run.tokenizer, run.split("train"), max_len=8,
        show_progress=False,
    )  # fmt: skip
    encode_text([src], run.tokenizer, run.split("mono"), show_progress=False)
    vocab = tok.get_vocab_size()
    spec = ModelSpec("seq2seq", vocab, vocab, d_model=16, n_heads=2, d_ff=32, encoder_layers=1,
                     decoder_layers=1)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec)
    for step in (10, 20):
        meta = {
            "kind": "seq2seq", "model": spec.to_dict(), "step": step,
            "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()},
            "best": {"metric": "bleu", "value": 5.0, "step": 10},
        }  # fmt: skip
        ckpt.save_state(state_path(run.step(step)), {"step": step})
        ckpt.save_checkpoint(run.step(step), model, meta)
    run_checkpoints.link_best(run.step(10))
    records = [{"step": s, "split": "train", "loss": 5.0 - s / 10} for s in (5, 10, 15, 20)]
    records.append({"step": 10, "split": "valid", "loss": 4.0, "bleu": 5.0})
    text = "".join(json.dumps(r) + "\n" for r in records)
    run.metrics.write_text(text + '{"step": 2', encoding="utf-8")
    return run


def test_parameters_come_from_the_header_and_shared_tensors_count_once(run):
    doc = summarize(run.step(20), "best")
    model, _ = ckpt.load_model(run.step(20))
    assert doc["what"] == "checkpoint" and doc["step"] == 20
    assert doc["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    by = {r["module"]: r for r in doc["parameters"]["by_module"]}
    assert by["generator"]["parameters"] == 0 and by["generator"]["shared_with"] == "src_embed"
    modules = [r["module"] for r in doc["parameters"]["by_module"]]
    assert modules[:3] == ["src_embed", "tgt_embed", "encoder"]  # pipeline order
    assert doc["sizes"]["weights_bytes"] == run.step(20).stat().st_size
    assert doc["tokenizer"]["src"]["vocab_size"] == model.spec.src_vocab_size
    assert json.loads(json.dumps(doc)) == doc  # JSON-ready as it is


def test_run_dir_gives_best_or_latest_and_best_finds_its_steps_state(run):
    best = summarize(run.root, "best")
    assert Path(best["path"]).name == "best.safetensors" and best["step"] == 10
    assert best["sizes"]["state_bytes"] == state_path(run.step(10)).stat().st_size
    latest = summarize(run.root, "latest")
    assert Path(latest["path"]) == run.step(20)
    assert latest["checkpoints"] == [run.step(10).name, run.step(20).name]


def test_metrics_file_skips_a_cut_off_last_line(run):
    mf = summarize(run.step(20), "best")["metrics_file"]
    assert mf["train_records"] == 4 and mf["valid_records"] == 1
    assert mf["last_train"]["step"] == 20 and mf["valid"][0]["bleu"] == 5.0


def test_split_counts_and_histogram_match_the_data(run):
    doc = summarize(run.split("train"), "best")
    data = open_split(run.split("train"))
    assert doc["what"] == "split" and doc["num_examples"] == len(data)
    assert doc["dropped"] == data.meta["dropped"] and sum(doc["dropped"].values()) > 0
    assert doc["num_tokens"]["tgt"] == int(data.tgt.lengths.sum())
    for side, lengths in (("src", data.src.lengths), ("tgt", data.tgt.lengths)):
        edges, counts = doc["histogram"][side]["edges"], doc["histogram"][side]["counts"]
        assert sum(counts) == len(data)
        assert counts == np.histogram(lengths, bins=edges)[0].tolist()  # the last bin closed
    assert summarize(run.split("train") / "meta.json", "best")["num_examples"] == len(data)
    mono = summarize(run.split("mono"), "best")
    assert mono["kind"] == "text" and list(mono["histogram"]) == ["text"]


def test_data_dir_lists_every_split(run):
    doc = summarize(run.data, "best")
    assert doc["what"] == "data" and sorted(doc["splits"]) == ["mono", "train"]


def test_tokenizer_file(run):
    doc = summarize(run.tokenizer, "best")
    vocab = Tokenizer.from_file(str(run.tokenizer)).get_vocab_size()
    assert doc["what"] == "tokenizer" and doc["vocab_size"] == vocab
    assert doc["specials"][:5] == [f"{piece}={i}" for i, piece in enumerate(SPECIALS)]


@pytest.mark.parametrize("joint", [True, False])
def test_run_before_training_lists_its_tokenizers(tmp_path, joint):
    run = RunDir(tmp_path / "fresh")
    paths = sorted(set(run.tokenizers(joint).values()))
    for path in paths:
        save_tokenizer(path)
    doc = summarize(run.root, "best")
    assert doc["what"] == "run" and sorted(doc["tokenizers"]) == [p.name for p in paths]
    assert "data" not in doc and "metrics_file" not in doc


def test_mlm_head_shares_the_embedding(tmp_path):
    spec = ModelSpec("mlm", 50, 50, d_model=16, n_heads=2, d_ff=32, encoder_layers=2,
                     decoder_layers=0)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec)
    path = tmp_path / "mlm.safetensors"
    ckpt.save_checkpoint(path, model, {"kind": "mlm", "model": spec.to_dict(), "step": 3})
    doc = summarize(path, "best")
    by = {r["module"]: r for r in doc["parameters"]["by_module"]}
    assert by["head"].get("shared_with") == "src_embed" and "decoder" not in by
    assert doc["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert doc["sizes"]["state_bytes"] is None and "metrics_file" not in doc


def test_what_is_not_summarised_is_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for target in (tmp_path / "notes.txt", tmp_path):
        with pytest.raises(TfcliError, match="not a checkpoint"):
            summarize(target, "best")
    with pytest.raises(TfcliError, match="no such file or directory"):
        summarize(tmp_path / "missing", "best")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TfcliError, match="not a readable tokenizer.json"):
        summarize(tmp_path / "broken.json", "best")
    state = tmp_path / "step-00000010.state.pt"
    state.write_bytes(b"")
    with pytest.raises(TfcliError, match="training state, not weights"):
        summarize(state, "best")

"""The bad-input matrix: every command, handed what a careless or hostile user hands it.

Each case runs the real entry point (`tfcli.cli.main`, in process) in a directory of valid
artefacts (texts, a tokenizer, checkpoints of both kinds, an encoded split, a run) and asserts
the promise: a non-zero exit, a last line `Error: ...` that names the problem, no traceback, and
nothing left behind (no new or changed file or directory, temp files included).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
import torch

from tfcli.checkpoints import files as ckpt
from tfcli.cli import main
from tfcli.data.encoding import encode_parallel
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import TokenizerConfig
from tfcli.run_dir import RunDir, state_path
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import save_tokenizer

WORDS = "the a cat dog sat on mat ran far big small red blue one two three".split()


def _lines(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))) for _ in range(n)]


def _checkpoint(path: Path, kind: str, tok, *, d_model: int = 32, step: int = 1) -> None:
    torch.manual_seed(step)
    v = tok.get_vocab_size()
    spec = ModelSpec(
        kind=kind, src_vocab_size=v, tgt_vocab_size=v, d_model=d_model, n_heads=4, d_ff=64,
        encoder_layers=1, decoder_layers=0 if kind == "mlm" else 1, dropout=0.0,
        max_positions=64,
    )  # fmt: skip
    meta = {
        "kind": kind,
        "model": spec.to_dict(),
        "recipe": recipe_mod.to_dict(recipe_mod.from_dict({})),
        "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()},
        "step": step,
    }
    ckpt.save_checkpoint(path, build_model(spec), meta)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Valid artefacts to aim bad input at; every case runs with this as its cwd."""
    root = tmp_path_factory.mktemp("world")
    for name, seed in (("train.src", 0), ("train.tgt", 1), ("valid.src", 2), ("valid.tgt", 3)):
        (root / name).write_text("\n".join(_lines(60, seed)) + "\n", encoding="utf-8")
    (root / "short.tgt").write_text("\n".join(_lines(10, 4)) + "\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    whole_gz = gzip.compress(("\n".join(_lines(3000, 9)) + "\n").encode())
    (root / "cut.txt.gz").write_bytes(whole_gz[: len(whole_gz) // 2])
    (root / "notjson.json").write_text("{ this is not json", encoding="utf-8")
    (root / "bogus.safetensors").write_bytes(b"\x00" * 64)
    (root / "a_file").write_text("x", encoding="utf-8")
    tok = train_tokenizer(
        [root / "train.src", root / "train.tgt"],
        TokenizerConfig(vocab_size=80, min_frequency=1),
        show_progress=False,
    )
    save_tokenizer(tok, root / "tok.json")
    (root / "tok_nospecials.json").write_text(
        tok.to_str().replace('"<mask>"', '"<MASK>"'), encoding="utf-8"
    )
    for kind in ("seq2seq", "mlm"):
        _checkpoint(RunDir(root / kind).best, kind, tok)
    run = RunDir(root / "run")
    for step in (1, 2):
        _checkpoint(run.step(step), "seq2seq", tok, step=step)
    ckpt.save_state(state_path(run.step(1)), {"step": 1})
    _checkpoint(RunDir(root / "wide").step(3), "seq2seq", tok, d_model=64, step=3)
    whole = run.step(2).read_bytes()
    (root / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    tok_path = root / "tok.json"
    encode_parallel(
        [root / "train.src"], [root / "train.tgt"], tok_path, tok_path, root / "split",
        min_len=1, max_len=0, max_len_ratio=0, show_progress=False,
    )  # fmt: skip
    (root / "halfid").mkdir()
    for f in (root / "split").iterdir():
        (root / "halfid" / f.name).write_bytes(f.read_bytes())
    src_bin = root / "halfid" / "src.bin"
    src_bin.write_bytes(src_bin.read_bytes()[:-1])
    bomb = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (root / "bomb.yaml").write_text("\n".join(bomb) + "\n", encoding="utf-8")
    (root / "list.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    (root / "broken.yaml").write_text("model: {d_model: [\n", encoding="utf-8")
    (root / "ok.yaml").write_text(
        "data: {src: train.src, tgt: train.tgt}\ntokenizer: {vocab_size: 80, min_frequency: 1}\n"
        "train: {max_steps: 1, device: cpu}\n",
        encoding="utf-8",
    )
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns if p.is_file() else 0)
    return out


OK = ["--set", "data.valid_src=valid.src", "--set", "data.valid_tgt=valid.tgt"]
CASES = [
    # recipes and validate
    ("validate-unknown-key", ["validate", "--set", "model.d_modle=3"], "did you mean 'model.d_model'"),
    ("validate-bad-type", ["validate", "--set", "train.seed=x"], "train.seed: expected an integer"),
    ("validate-nan", ["validate", "--set", "optim.lr=.nan"], "expected a finite number"),
    ("validate-negative-steps", ["validate", "--set", "train.max_steps=-1"], "must be >= 0"),
    ("validate-heads", ["validate", "--set", "model.n_heads=7"], "divisible by model.n_heads"),
    ("validate-alias-bomb", ["validate", "bomb.yaml"], "expands to more than"),
    ("validate-top-level-list", ["validate", "list.yaml"], "expected a mapping of sections"),
    ("validate-broken-yaml", ["validate", "broken.yaml"], "invalid YAML"),
    ("validate-missing-file", ["validate", "nope.yaml"], "no bundled recipe of that name"),
    ("validate-set-syntax", ["validate", "--set", "nonsense"], "not of the form section.key=value"),
    ("validate-set-not-section", ["validate", "--set", "run_dir.x=1"], "run_dir: expected a string"),
    ("validate-huge-vocab", ["validate", "--set", "tokenizer.vocab_size=1000000000000"], "at most"),
    ("validate-mlm-split", ["validate", "--set", "mlm.keep_prob=0.5"], "sum to 1"),
    ("validate-top-p", ["validate", "--set", "decode.top_p=0"], "decode.top_p"),
    ("validate-share-separate", ["validate", "--set", "tokenizer.joint=false"], "needs tokenizer.joint"),
    ("recipes-unknown", ["recipes", "transformer-bse"], "did you mean 'transformer-base'"),
    ("recipes-copy-exists", ["recipes", "demo-tiny", "--copy", "a_file"], "already exists"),
    # tokenize
    ("tokenize-missing-input", ["tokenize", "nope.txt", "-o", "t.json"], "file not found"),
    ("tokenize-no-glob-match", ["tokenize", "*.nothing", "-o", "t.json"], "no file matches"),
    ("tokenize-directory", ["tokenize", "split", "-o", "t.json"], "is a directory"),
    ("tokenize-latin1", ["tokenize", "latin1.txt", "-o", "t.json"], "invalid UTF-8"),
    ("tokenize-corrupt-gz", ["tokenize", "cut.txt.gz", "-o", "t.json"], "corrupt gzip data"),
    ("tokenize-empty", ["tokenize", "empty.txt", "-o", "t.json"], "empty"),
    ("tokenize-huge-vocab", ["tokenize", "train.src", "--vocab-size", "1000000000000", "-o", "t.json"], "at most"),
    ("tokenize-tiny-vocab", ["tokenize", "train.src", "--vocab-size", "3", "-o", "t.json"], "at least 6"),
    ("tokenize-output-under-file", ["tokenize", "train.src", "-o", "a_file/t.json"], "cannot create"),
    ("tokenize-show-missing", ["tokenize", "--tokenizer", "nope.json", "--show", "a cat"], "nope.json"),
    ("tokenize-show-not-json", ["tokenize", "--tokenizer", "notjson.json", "--show", "a"], "not a valid tokenizer"),
    ("tokenize-show-specials", ["tokenize", "--tokenizer", "tok_nospecials.json", "--show", "a"], "<mask>"),
    # encode
    ("encode-missing-src", ["encode", "--src", "nope.src", "--tgt", "train.tgt", "--tokenizer", "tok.json", "-o", "out"], "file not found"),
    ("encode-misaligned", ["encode", "--src", "train.src", "--tgt", "short.tgt", "--tokenizer", "tok.json", "-o", "out"], "line"),
    ("encode-empty", ["encode", "--text", "empty.txt", "--tokenizer", "tok.json", "-o", "out"], "empty"),
    ("encode-no-tokenizer", ["encode", "--text", "train.src", "--tokenizer", "nope.json", "-o", "out"], "nope.json"),
    ("encode-bad-tokenizer", ["encode", "--text", "train.src", "--tokenizer", "notjson.json", "-o", "out"], "not a valid tokenizer"),
    ("encode-latin1", ["encode", "--text", "latin1.txt", "--tokenizer", "tok.json", "-o", "out"], "invalid UTF-8"),
    ("encode-corrupt-gz", ["encode", "--text", "cut.txt.gz", "--tokenizer", "tok.json", "-o", "out"], "corrupt gzip data"),
    ("encode-exists", ["encode", "--text", "train.src", "--tokenizer", "tok.json", "-o", "split"], "pass --force"),
    # train and pretrain-mlm (refused before any file is written)
    ("train-unbounded", ["train", "ok.yaml", "--max-steps", "0", "--run-dir", "r"], "nothing would stop training"),
    ("train-no-data", ["train", "--max-steps", "1", "--run-dir", "r"], "data.src"),
    ("train-resume-nothing", ["train", "ok.yaml", "--run-dir", "r", "--resume"], "no checkpoint"),
    ("train-resume-and-force", ["train", "ok.yaml", "--run-dir", "run", "--resume", "--force"], "contradict"),
    ("train-existing-run", ["train", "ok.yaml", "--run-dir", "run", *OK], "already holds checkpoints"),
    ("train-heads", ["train", "ok.yaml", "--run-dir", "r", "--set", "model.n_heads=7"], "divisible"),
    ("train-lr", ["train", "ok.yaml", "--run-dir", "r", "--set", "optim.lr=-1"], "optim.lr"),
    ("train-init-from-missing", ["train", "ok.yaml", "--run-dir", "r", "--init-from", "nope"], "train.init_from: no such checkpoint"),
    ("train-init-from-mlm", ["train", "ok.yaml", "--run-dir", "r", "--init-from", "mlm"], "is a mlm checkpoint"),
    ("train-init-from-resume", ["train", "ok.yaml", "--run-dir", "run", "--init-from", "seq2seq", "--resume"], "pass one of them"),
    ("train-init-from-other-shape", ["train", "ok.yaml", "--run-dir", "r", "--init-from", "seq2seq", "--set", "model.d_model=64", "--set", "tokenizer.vocab_size=8000", "--set", "tokenizer.min_frequency=2"], "model.d_model (checkpoint 32, recipe 64)"),
    ("train-weights-count", ["train", "ok.yaml", "--run-dir", "r", "--set", "data.weights=[1, 2]"], "one weight per data.src entry"),
    ("train-bpe-dropout-unigram", ["train", "ok.yaml", "--run-dir", "r", "--set", "data.bpe_dropout=0.1", "--set", "tokenizer.type=unigram"], "needs a BPE vocabulary"),
    ("mlm-weights", ["pretrain-mlm", "--set", "data.text=train.src", "--set", "data.bpe_dropout=0.1", "--max-steps", "1", "--run-dir", "r"], "pretrain-mlm reads data.text as it is"),
    ("mlm-no-text", ["pretrain-mlm", "--max-steps", "1", "--run-dir", "r"], "data.text"),
    ("mlm-block-size", ["pretrain-mlm", "--set", "data.text=train.src", "--set", "mlm.block_size=4096", "--set", "model.max_positions=128", "--max-steps", "1", "--run-dir", "r"], "mlm.block_size"),
    ("mlm-exposure", ["pretrain-mlm", "--set", "data.text=train.src", "--set", "train.exposure=random_tokens", "--max-steps", "1", "--run-dir", "r"], "a masked LM has no decoder"),
    # inspect
    ("inspect-missing", ["inspect", "nope"], "nope"),
    ("inspect-bogus-checkpoint", ["inspect", "bogus.safetensors"], "bogus.safetensors"),
    ("inspect-truncated-checkpoint", ["inspect", "truncated.safetensors"], "truncated.safetensors"),
    ("inspect-half-id-split", ["inspect", "halfid"], "not a whole number of"),
    ("inspect-bad-tokenizer", ["inspect", "notjson.json"], "notjson.json"),
    # decode
    ("decode-missing", ["decode", "nope", "-i", "train.src"], "no such checkpoint"),
    ("decode-state-file", ["decode", "run/checkpoints/step-00000001.state.pt", "-i", "train.src"], "training state"),
    ("decode-not-checkpoint", ["decode", "train.src", "-i", "train.src"], "not a checkpoint"),
    ("decode-truncated", ["decode", "truncated.safetensors", "-i", "train.src"], "truncated.safetensors"),
    ("decode-nbest-beam", ["decode", "seq2seq", "-i", "train.src", "--beam", "2", "--nbest", "3"], "exceeds the beam"),
    ("decode-greedy-nbest", ["decode", "seq2seq", "-i", "train.src", "--mode", "greedy", "--nbest", "2"], "needs --mode beam"),
    ("decode-fill-on-seq2seq", ["decode", "seq2seq", "-i", "train.src", "--mode", "fill-mask"], "needs a masked-LM"),
    ("decode-beam-on-mlm", ["decode", "mlm", "-i", "train.src", "--beam", "3"], "translation search setting"),
    ("decode-mode-on-mlm", ["decode", "mlm", "-i", "train.src", "--mode", "beam"], "masked-LM checkpoint"),
    ("decode-reference-mismatch", ["decode", "seq2seq", "-i", "train.src", "--reference", "short.tgt"], "short.tgt"),
    ("decode-reference-missing", ["decode", "seq2seq", "-i", "train.src", "--reference", "nope.tgt"], "nope.tgt"),
    ("decode-set-not-decode", ["decode", "seq2seq", "-i", "train.src", "--set", "train.seed=2"], "decode only takes"),
    ("decode-set-temperature", ["decode", "seq2seq", "-i", "train.src", "--set", "decode.temperature=0"], "decode.temperature"),
    ("decode-input-latin1", ["decode", "seq2seq", "-i", "latin1.txt", "-o", "out.txt"], "invalid UTF-8"),
    ("decode-input-corrupt-gz", ["decode", "seq2seq", "-i", "cut.txt.gz", "-o", "out.txt"], "corrupt gzip data"),
    ("decode-json-jsonl", ["decode", "seq2seq", "-i", "train.src", "--json", "--format", "jsonl"], "--json replaces"),
    ("decode-ensemble-mlm", ["decode", "seq2seq", "mlm", "-i", "train.src"], "cannot join an ensemble"),
    ("decode-constraints-greedy", ["decode", "seq2seq", "-i", "train.src", "--constraints", "train.src", "--mode", "greedy"], "--constraints needs --mode beam"),
    ("decode-constraints-count", ["decode", "seq2seq", "-i", "train.src", "--constraints", "short.tgt", "-o", "out.txt"], "short.tgt has"),
    ("serve-missing", ["serve", "nope"], "no such checkpoint"),
    ("serve-port-range", ["serve", "seq2seq", "--port", "70000"], "70000"),
    # score and evaluate
    ("score-missing", ["score", "nope", "--src", "train.src", "--tgt", "train.tgt"], "no such checkpoint"),
    ("score-misaligned", ["score", "seq2seq", "--src", "train.src", "--tgt", "short.tgt", "-o", "out.txt"], "they must align"),
    ("score-mlm", ["score", "mlm", "--src", "train.src", "--tgt", "train.tgt"], "masked-LM checkpoint"),
    ("score-latin1", ["score", "seq2seq", "--src", "latin1.txt", "--tgt", "latin1.txt", "-o", "out.txt"], "invalid UTF-8"),
    ("evaluate-missing", ["evaluate", "nope"], "no such checkpoint"),
    ("evaluate-no-split", ["evaluate", "seq2seq"], "sets no data.valid_src"),
    ("evaluate-text-on-seq2seq", ["evaluate", "seq2seq", "--text", "train.src"], "evaluates a masked LM"),
    ("evaluate-beam-on-mlm", ["evaluate", "mlm", "--beam", "4"], "masked-LM checkpoint"),
    # average
    ("average-one", ["average", "run/checkpoints/step-00000001.safetensors", "-o", "avg.safetensors"], "at least 2"),
    ("average-step-name", ["average", "run", "--last", "2", "-o", "step-00000009.safetensors"], "reserved"),
    ("average-onto-input", ["average", "run", "--last", "2", "-o", "run/checkpoints/step-00000001.safetensors"], "step-* names are reserved"),
    ("average-exists", ["average", "run", "--last", "2", "-o", "a_file"], "already exists"),
    ("average-mismatch", ["average", "run/checkpoints/step-00000001.safetensors", "wide/checkpoints/step-00000003.safetensors", "-o", "avg.safetensors"], "wide"),
    ("average-empty-run", ["average", "split", "--last", "2", "-o", "avg.safetensors"], "checkpoint"),
    # export
    ("export-missing", ["export", "nope", "--to", "hf", "out"], "no such checkpoint"),
    ("export-mlm-to-ct2", ["export", "mlm", "--to", "ctranslate2", "out"], "masked-LM checkpoint has no CTranslate2"),
    ("export-onto-file", ["export", "seq2seq", "--to", "hf", "a_file"], "a_file is a file"),
    ("export-quantization-hf", ["export", "seq2seq", "--to", "hf", "out", "--quantization", "int8"], "--quantization applies"),
    ("decode-ct2-attention", ["decode", "seq2seq", "--engine", "ctranslate2", "-i", "train.src", "--attention", "a.png"], "--attention needs --engine torch"),
    # demo-data
    ("demo-data-onto-file", ["demo-data", "a_file"], "a_file"),
]  # fmt: skip


def test_the_matrix_covers_every_command():
    from tfcli.cli import COMMANDS

    covered = {argv[0] for _, argv, _ in CASES}
    assert covered >= set(COMMANDS) - {"quickstart"}, set(COMMANDS) - covered
    assert len(CASES) >= 60


@pytest.mark.parametrize(("name", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(world, monkeypatch, capsys, name, argv, fragment):
    monkeypatch.chdir(world)
    monkeypatch.delenv("TFCLI_DEBUG", raising=False)
    monkeypatch.setenv("TFCLI_QUIET", "1")
    before = _snapshot(world)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code not in (0, None), err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), err
    assert fragment in lines[-1], lines[-1]
    assert _snapshot(world) == before, "a refused command left or changed files"
    json.dumps(lines)  # the message is plain text

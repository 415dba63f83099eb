"""`tfcli decode A B ...` (ensembles) and `--constraints FILE` end to end on tiny checkpoints:
outputs equal the library's, constraints appear in every output, and every refusal is one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli
from tfcli.decoding.beam import beam_search
from tfcli.decoding.ensemble import Ensemble
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import EOS

WORDS = "the a cat dog bird sat ran sang on in at mat park song moon tonight big small red".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def save(path: Path, tok, kind: str = "seq2seq", seed: int = 0, **arch) -> torch.nn.Module:
    torch.manual_seed(seed)
    args = dict(d_model=32, n_heads=4, d_ff=64, encoder_layers=2, dropout=0.0, max_positions=64,
                decoder_layers=0 if kind == "mlm" else 2, init="xavier")  # fmt: skip
    args.update(arch)
    v = tok.get_vocab_size()
    spec = ModelSpec(kind=kind, src_vocab_size=v, tgt_vocab_size=v, **args)
    model = build_model(spec).eval()
    recipe = recipe_mod.to_dict(
        recipe_mod.from_dict({"decode": {"max_len_a": 1.0, "max_len_b": 4}})
    )
    meta = {"kind": kind, "model": spec.to_dict(), "recipe": recipe, "step": 1,
            "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}}  # fmt: skip
    ckpt.save_checkpoint(path, model, meta)
    return model


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ensemble")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus(200, 0)) + "\n", encoding="utf-8")
    cfg = TokenizerConfig(vocab_size=60, min_frequency=1)
    tok = train_tokenizer([text], cfg, show_progress=False)
    text.write_text("\n".join(corpus(200, 1)[:50]) + "\n", encoding="utf-8")
    other = train_tokenizer([text], TokenizerConfig(vocab_size=50, min_frequency=1), False)
    out = {"tok": tok, "root": root}
    out["a_model"] = save(root / "a.safetensors", tok, seed=0)
    out["b_model"] = save(root / "b.safetensors", tok, seed=1, d_model=16, n_heads=2, d_ff=32,
                          decoder_layers=1, positions="learned")  # fmt: skip
    save(root / "other.safetensors", other, seed=2)
    save(root / "mlm.safetensors", tok, kind="mlm", seed=3)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(*args):
    return CliRunner().invoke(cli, ["decode", *map(str, args)])


def src_tensor(tok, line: str) -> torch.Tensor:
    return torch.tensor([[*tok.encode(line).ids, EOS]])


def test_ensemble_decode_equals_the_library_ensemble(assets, tmp_path):
    lines = corpus(6, seed=7)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    root = assets["root"]
    result = invoke(root / "a.safetensors", root / "b.safetensors", "-i", tmp_path / "in.txt",
                    "--beam", "3", "--nbest", "2", "--format", "jsonl")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a.safetensors + " in result.stderr
    ens = Ensemble([assets["a_model"], assets["b_model"]])
    tok = assets["tok"]
    single = []
    for r, line in zip(map(json.loads, result.stdout.splitlines()), lines, strict=True):
        (want,) = beam_search(ens, src_tensor(tok, line), beam_size=3, nbest=2, max_len_a=1.0,
                              max_len_b=4)  # fmt: skip
        assert [h["ids"] for h in r["hypotheses"]] == [h.tokens for h in want]
        assert [h["score"] for h in r["hypotheses"]] == pytest.approx(
            [h.score for h in want], abs=1e-5
        )
        (alone,) = beam_search(assets["a_model"], src_tensor(tok, line), beam_size=3,
                               max_len_a=1.0, max_len_b=4)  # fmt: skip
        single.append(alone[0].tokens == want[0].tokens)
    assert not all(single), "the ensemble should not just repeat its first member"


@pytest.mark.parametrize(
    ("names", "extra", "message"),
    [
        (["a", "other"], [], "other.safetensors: its src tokenizer differs from"),
        (["a", "mlm"], [], "mlm.safetensors: a mlm checkpoint cannot join an ensemble"),
        (["a", "b"], ["--attention", "x.png"], "--attention draws one model's cross-attention"),
    ],
)
def test_ensemble_refusals_are_one_line(assets, names, extra, message):
    paths = [assets["root"] / f"{n}.safetensors" for n in names]
    result = invoke(*paths, *extra)
    assert result.exit_code != 0
    assert message in str(result.exception) and "\n" not in str(result.exception)


def _constraints_run(assets, tmp_path, lines, cons_lines, *extra, name="c.tsv"):
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / name).write_text("\n".join(cons_lines) + "\n", encoding="utf-8")
    root = assets["root"]
    return invoke(root / "a.safetensors", "-i", tmp_path / "in.txt", "--constraints",
                  tmp_path / name, "--format", "jsonl", "--beam", "4", *extra)  # fmt: skip


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_constraints_appear_in_every_output(assets, tmp_path, fmt):
    lines = corpus(8, seed=11)
    phrases = [["cat", "the mat"], [], ["moon"], ["dog\tsang"], [], ["big red"], ["park"], []]
    phrases[3] = ["dog", "sang"]
    if fmt == "tsv":
        cons_lines = ["\t".join(p) for p in phrases]
    else:
        cons_lines = [json.dumps(p) for p in phrases]
    result = _constraints_run(assets, tmp_path, lines, cons_lines, "--nbest", "2",
                              "--max-len-b", "8", name=f"c.{fmt}")  # fmt: skip
    assert result.exit_code == 0, result.output
    tok = assets["tok"]
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["source"] for r in records] == lines
    for r, ps, line in zip(records, phrases, lines, strict=True):
        for h in r["hypotheses"]:
            for p in ps:
                ids = tok.encode(p).ids
                assert any(h["ids"][j : j + len(ids)] == ids for j in range(len(h["ids"]))), p
        if not ps:  # unconstrained lines: the plain beam's output
            (want,) = beam_search(assets["a_model"], src_tensor(tok, line), beam_size=4,
                                  nbest=2, max_len_a=1.0, max_len_b=8)  # fmt: skip
            assert [h["ids"] for h in r["hypotheses"]] == [h.tokens for h in want]


@pytest.mark.parametrize(
    ("cons_lines", "extra", "message"),
    [
        (["cat", "dog"], ["--mode", "greedy"], "--constraints needs --mode beam"),
        (["cat"], [], "has 1 lines but the input has more"),
        (["cat", "dog", "moon"], [], "has more lines than the input (2)"),
        (["", "the cat sat on the mat in the park tonight"], [], "line 2: its constraints are"),
        (['["cat"'], [], ":1: not JSON"),
    ],
)
def test_constraint_refusals_are_one_line_and_write_nothing(assets, tmp_path, cons_lines, extra,
                                                            message):  # fmt: skip
    name = "c.jsonl" if cons_lines[0].startswith("[") else "c.tsv"
    out = tmp_path / "out.txt"
    result = _constraints_run(assets, tmp_path, ["a cat", "the dog"], cons_lines, "-o", out,
                              *extra, name=name)  # fmt: skip
    assert result.exit_code != 0
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not out.exists()


def test_constraints_refused_for_mlm(assets, tmp_path):
    (tmp_path / "c.tsv").write_text("cat\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["decode", str(assets["root"] / "mlm.safetensors"),
                                      "--constraints", str(tmp_path / "c.tsv")],
                                input="a <mask>\n")  # fmt: skip
    assert result.exit_code != 0 and "--constraints needs a seq2seq" in str(result.exception)

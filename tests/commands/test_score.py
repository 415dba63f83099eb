"""`tfcli score` and `tfcli evaluate` on tiny random checkpoints (CliRunner, in-process)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import BOS, EOS

WORDS = "the a cat dog bird sat ran sang on in at mat park song moon big small red".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("score")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus(200, 0)) + "\n", encoding="utf-8")
    tok = train_tokenizer([text], TokenizerConfig(vocab_size=60, min_frequency=1),
                          show_progress=False)  # fmt: skip
    (root / "src.txt").write_text("\n".join(corpus(9, 1)) + "\n")
    (root / "tgt.txt").write_text("\n".join(corpus(9, 2)) + "\n")
    recipe = recipe_mod.to_dict(recipe_mod.from_dict({
        "data": {"test_src": [str(root / "src.txt")], "test_tgt": [str(root / "tgt.txt")],
                 "valid_text": [str(root / "src.txt")]},
        "decode": {"max_len_a": 1.0, "max_len_b": 3, "beam_size": 3},
    }))  # fmt: skip
    out = {"tok": tok, "root": root}
    for kind in ("seq2seq", "mlm"):
        torch.manual_seed(0)
        spec = ModelSpec(
            kind=kind, src_vocab_size=60, tgt_vocab_size=60, d_model=32, n_heads=4, d_ff=64,
            encoder_layers=1, decoder_layers=0 if kind == "mlm" else 1, dropout=0.0,
            max_positions=64,
        )  # fmt: skip
        model = build_model(spec).eval()
        path = root / kind / "checkpoints" / "best.safetensors"
        path.parent.mkdir(parents=True)
        meta = {"kind": kind, "model": spec.to_dict(), "recipe": recipe, "step": 1,
                "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}}  # fmt: skip
        ckpt.save_checkpoint(path, model, meta)
        out[kind], out[f"{kind}_model"] = root / kind, model
    return out


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_score_gives_each_pairs_log_probability_in_input_order(assets, tmp_path):
    root, tok, model = assets["root"], assets["tok"], assets["seq2seq_model"]
    out = tmp_path / "scores.jsonl"
    res = invoke("score", assets["seq2seq"], "--src", root / "src.txt", "--tgt", root / "tgt.txt",
                 "--format", "jsonl", "-o", out, "--max-tokens", "20", "--chunk-size", "4")  # fmt: skip
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    srcs, tgts = corpus(9, 1), corpus(9, 2)
    assert [r["line"] for r in records] == list(range(1, 10))
    total = count = 0
    for r, s, t in zip(records, srcs, tgts, strict=True):
        src = torch.tensor([[*tok.encode(s, add_special_tokens=False).ids, EOS]])
        tgt = [BOS, *tok.encode(t, add_special_tokens=False).ids, EOS]
        with torch.no_grad():
            lp = model(src, torch.tensor([tgt[:-1]]))[0].float().log_softmax(-1)
        want = sum(float(lp[i, tgt[i + 1]]) for i in range(len(tgt) - 1))
        assert r["tokens"] == len(tgt) - 1 and r["logprob"] == pytest.approx(want, abs=1e-4)
        assert r["score"] == pytest.approx(want / r["tokens"], abs=1e-4)
        total, count = total + want, count + r["tokens"]
    res = invoke("score", assets["seq2seq"], "--src", root / "src.txt", "--tgt", root / "tgt.txt",
                 "--json")  # fmt: skip
    summary = json.loads(res.stdout)
    assert summary["tokens"] == count and summary["sentences"] == 9
    assert summary["ppl"] == pytest.approx(math.exp(-total / count), rel=1e-4)
    text = invoke("score", assets["seq2seq"], "--src", root / "src.txt", "--tgt", root / "tgt.txt")
    first = text.stdout.splitlines()[0].split("\t")
    assert float(first[0]) == pytest.approx(records[0]["logprob"], abs=1e-5)
    assert int(first[2]) == records[0]["tokens"]


def test_evaluate_bleu_equals_decodes_and_loss_equals_scores(assets):
    a = json.loads(invoke("evaluate", assets["seq2seq"], "--mode", "beam", "--json").stdout)
    root = assets["root"]
    d = json.loads(invoke("decode", assets["seq2seq"], "-i", root / "src.txt", "--reference",
                          root / "tgt.txt", "--mode", "beam", "--json").stdout)  # fmt: skip
    assert (a["bleu"], a["chrf"]) == (d["bleu"], d["chrf"]) and a["mode"] == "beam"
    assert a["chrf"] > 0  # a real score to agree on, not 0 == 0
    s = json.loads(invoke("score", assets["seq2seq"], "--src", root / "src.txt", "--tgt",
                          root / "tgt.txt", "--json").stdout)  # fmt: skip
    assert a["ppl"] == pytest.approx(s["ppl"]) and a["loss"] == pytest.approx(s["loss"])
    assert a["loss"] != pytest.approx(a["nll"])  # label-smoothed, as training reports it
    res = invoke("evaluate", assets["seq2seq"], "--no-bleu", "--split", "test")
    assert res.exit_code == 0 and "ppl" in res.output and "bleu" not in res.output


def test_evaluate_a_masked_lm(assets):
    root = assets["root"]
    a = json.loads(invoke("evaluate", assets["mlm"], "--text", root / "src.txt", "--json").stdout)
    assert a["kind"] == "mlm" and a["sentences"] == 9 and 0 <= a["accuracy"] <= 1
    assert a["pppl"] > 1 and a["scored_tokens"] > a["masked_tokens"]
    again = json.loads(invoke("evaluate", assets["mlm"], "--json").stdout)  # data.valid_text
    assert again == {**a, "checkpoint": again["checkpoint"]}  # the same fixed-seed masks


@pytest.mark.parametrize(
    "args, message",
    [
        (["score", "mlm", "--src", "src.txt", "--tgt", "tgt.txt"], "masked-LM checkpoint"),
        (["score", "seq2seq", "--src", "src.txt", "--tgt", "corpus.txt"], "they must align"),
        (["evaluate", "mlm", "--mode", "beam"], "masked-LM checkpoint"),
        (["evaluate", "seq2seq", "--text", "src.txt"], "evaluates a masked LM"),
        (["evaluate", "seq2seq", "--split", "valid"], "sets no data.valid_src"),
    ],
)
def test_refusals_are_one_line(assets, args, message):
    root = assets["root"]
    args = [str(root / a) if (root / a).exists() else a for a in args]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and message in str(res.exception)
    assert "\n" not in str(res.exception)


def test_help_has_examples():
    for command in ("score", "evaluate"):
        res = CliRunner().invoke(cli, [command, "--help"])
        assert res.exit_code == 0 and f"tfcli {command} runs/" in res.output

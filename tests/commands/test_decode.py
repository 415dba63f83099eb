"""`tfcli decode` end to end on tiny random checkpoints: order, streaming, formats, scores,
attention pictures, fill-mask and every refusal."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli
from tfcli.decoding.beam import beam_search
from tfcli.decoding.greedy import greedy
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import EOS

WORDS = "the a cat dog bird sat ran sang on in at mat park song moon tonight big small red".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("decode")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus(200, 0)) + "\n", encoding="utf-8")
    tok = train_tokenizer(
        [text], TokenizerConfig(vocab_size=60, min_frequency=1), show_progress=False
    )
    tok_meta = {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}
    recipe = recipe_mod.to_dict(
        recipe_mod.from_dict({"decode": {"max_len_a": 1.0, "max_len_b": 3}})
    )
    out = {"tok": tok}
    for kind in ("seq2seq", "mlm"):
        torch.manual_seed(0)
        spec = ModelSpec(
            kind=kind, src_vocab_size=tok.get_vocab_size(), tgt_vocab_size=tok.get_vocab_size(),
            d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=0 if kind == "mlm" else 2,
            dropout=0.0, max_positions=64,
        )  # fmt: skip
        model = build_model(spec).eval()
        run = root / kind
        path = run / "checkpoints" / "best.safetensors"
        path.parent.mkdir(parents=True)
        meta = {
            "kind": kind,
            "model": spec.to_dict(),
            "recipe": recipe,
            "tokenizer": tok_meta,
            "step": 1,
        }
        ckpt.save_checkpoint(path, model, meta)
        out[kind] = run
        out[f"{kind}_model"] = model
    torch.manual_seed(0)  # a non-autoregressive one (mask-predict), the same size
    nat = ModelSpec.from_dict({**spec.to_dict(), "kind": "seq2seq", "decoder_layers": 2,
                               "decoder": "non_autoregressive"})  # fmt: skip
    out["nat_model"] = build_model(nat).eval()
    ckpt.save_checkpoint(
        root / "nat.safetensors", out["nat_model"], {**meta, "kind": "seq2seq",
                                                     "model": nat.to_dict()},
    )  # fmt: skip
    out["nat"] = root / "nat.safetensors"
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (a second one mostly spins on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["decode", *map(str, args)], input=input, catch_exceptions=False)


def src_tensor(tok, line: str) -> torch.Tensor:
    return torch.tensor([[*tok.encode(line).ids, EOS]])


def test_output_order_equals_input_order_across_chunks_and_batches(assets):
    lines = corpus(23, seed=5)  # shuffled lengths
    lines[4] = ""  # blank in, blank out
    tok, model = assets["tok"], assets["seq2seq_model"]
    want = [
        tok.decode(greedy(model, src_tensor(tok, line), max_len_a=1.0, max_len_b=3)[0])
        if line
        else ""
        for line in lines
    ]
    result = invoke(
        assets["seq2seq"],
        "--mode",
        "greedy",
        "--chunk-size",
        "5",
        "--max-tokens",
        "30",
        input="\n".join(lines) + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n")[:-1] == want


def test_beam_through_cli_equals_library_and_jsonl_nbest(assets, tmp_path):
    lines = corpus(6, seed=7)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke(
        assets["seq2seq"],
        "-i",
        tmp_path / "in.txt",
        "--beam",
        "3",
        "--nbest",
        "2",
        "--format",
        "jsonl",
    )
    assert result.exit_code == 0
    records = [json.loads(x) for x in result.stdout.splitlines()]
    tok, model = assets["tok"], assets["seq2seq_model"]
    assert [r["line"] for r in records] == list(range(1, 7))
    for r, line in zip(records, lines, strict=True):
        (want,) = beam_search(
            model, src_tensor(tok, line), beam_size=3, nbest=2, max_len_a=1.0, max_len_b=3
        )
        assert r["source"] == line
        assert [h["ids"] for h in r["hypotheses"]] == [h.tokens for h in want]
        assert [h["score"] for h in r["hypotheses"]] == pytest.approx(
            [h.score for h in want], abs=1e-5
        )
        assert r["hypotheses"][0]["tokens"] == [tok.id_to_token(i) for i in want[0].tokens]


def test_output_file_reference_scores_and_json(assets, tmp_path):
    lines = corpus(12, seed=9)
    refs = corpus(12, seed=10)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    out = tmp_path / "hyp.txt"
    args = [
        assets["seq2seq"],
        "-i",
        tmp_path / "in.txt",
        "-o",
        out,
        "--mode",
        "greedy",
        "--reference",
        tmp_path / "ref.txt",
    ]
    result = invoke(*args)
    assert result.exit_code == 0 and result.stdout == ""
    assert "BLEU" in result.stderr and "tok:13a" in result.stderr
    hyps = out.read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 12
    scored = json.loads(invoke(*args, "--json").stdout)
    from tfcli.decoding.metrics import bleu_chrf

    assert scored["bleu"] == pytest.approx(bleu_chrf(hyps, refs)["bleu"])
    assert scored["chrf"] == pytest.approx(bleu_chrf(hyps, refs)["chrf"])
    assert scored["sentences"] == 12 and scored["sentences_per_second"] > 0
    assert "nrefs:1" in scored["bleu_signature"]


def test_reference_line_mismatch_is_refused_before_decoding(assets, tmp_path):
    (tmp_path / "in.txt").write_text("a cat\nthe dog\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("one line\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        [
            "decode",
            str(assets["seq2seq"]),
            "-i",
            str(tmp_path / "in.txt"),
            "--reference",
            str(tmp_path / "ref.txt"),
        ],
    )
    assert result.exit_code != 0
    assert "has 1 lines but --input" in str(result.exception)
    # from stdin the count is known only at the end
    result = CliRunner().invoke(
        cli,
        [
            "decode",
            str(assets["seq2seq"]),
            "--mode",
            "greedy",
            "--reference",
            str(tmp_path / "ref.txt"),
        ],
        input="a\nb\nc\n",
    )
    assert "must be line-aligned" in str(result.exception)


def test_failed_decode_leaves_no_output_file(assets, tmp_path):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"a cat\n" * 5 + b"\xff\xfe broken\n")
    out = tmp_path / "hyp.txt"
    result = CliRunner().invoke(
        cli,
        [
            "decode",
            str(assets["seq2seq"]),
            "-i",
            str(bad),
            "-o",
            str(out),
            "--mode",
            "greedy",
            "--chunk-size",
            "2",
        ],
    )
    assert result.exit_code != 0 and "invalid UTF-8" in str(result.exception)
    assert list(tmp_path.iterdir()) == [bad]  # neither hyp.txt nor a temp file


def test_sampling_reproducible_by_seed(assets):
    lines = "\n".join(corpus(5, seed=3)) + "\n"
    a = invoke(
        assets["seq2seq"], "--mode", "sample", "--seed", "4", "--temperature", "2", input=lines
    ).stdout
    b = invoke(
        assets["seq2seq"], "--mode", "sample", "--seed", "4", "--temperature", "2", input=lines
    ).stdout
    c = invoke(
        assets["seq2seq"], "--mode", "sample", "--seed", "5", "--temperature", "2", input=lines
    ).stdout
    assert a == b and a != c


def test_settings_precedence_set_then_flags(assets):
    lines = "\n".join(corpus(4, seed=2)) + "\n"
    by_flag = invoke(assets["seq2seq"], "--mode", "greedy", input=lines).stdout
    by_set = invoke(assets["seq2seq"], "--set", "decode.mode=greedy", input=lines).stdout
    flag_wins = invoke(
        assets["seq2seq"], "--set", "decode.mode=sample", "--mode", "greedy", input=lines
    ).stdout
    assert by_flag == by_set == flag_wins
    bad = CliRunner().invoke(
        cli, ["decode", str(assets["seq2seq"]), "--set", "decode.beam_sise=3"], input=lines
    )
    assert "did you mean 'decode.beam_size'" in str(bad.exception)


def test_settings_precedence_checkpoint_recipe_set_flags(assets, tmp_path):
    """The checkpoint's decode section (beam) < --recipe's < --set < flags."""
    lines = "\n".join(corpus(4, seed=2)) + "\n"

    def scores(*args):
        out = invoke(assets["seq2seq"], "--format", "jsonl", *args, input=lines).stdout
        return [r["hypotheses"][0]["score"] for r in map(json.loads, out.splitlines())]

    greedy, beam = scores("--mode", "greedy"), scores()  # beam: length-normalised scores
    assert greedy != beam
    recipe = tmp_path / "greedy.yaml"
    recipe.write_text("decode:\n  mode: greedy\n", encoding="utf-8")
    assert scores("--recipe", recipe) == greedy
    assert scores("--recipe", recipe, "--set", "decode.mode=beam") == beam
    assert scores("--recipe", recipe, "--set", "decode.mode=sample", "--mode", "beam") == beam


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "0"], "decode settings: decode.temperature: must be > 0, got 0.0"),
        (["--top-p", "1.5"], "decode.top_p: must be in (0, 1], got 1.5"),
        (["--set", "decode.beam_size=two"], "decode.beam_size: expected an integer, got 'two'"),
        (["--set", "train.max_steps=3"], "decode only takes decode.KEY=VALUE settings"),
    ],
)
def test_bad_settings_are_one_clear_error(assets, args, message):
    result = CliRunner().invoke(cli, ["decode", str(assets["seq2seq"]), *args], input="a cat\n")
    assert result.exit_code != 0
    assert message in str(result.exception)


def test_attention_png(assets, tmp_path):
    (tmp_path / "in.txt").write_text(
        "the cat sat\nthe big red dog ran in the park\n", encoding="utf-8"
    )
    png = tmp_path / "attn.png"
    result = invoke(
        assets["seq2seq"],
        "-i",
        tmp_path / "in.txt",
        "--mode",
        "greedy",
        "--attention",
        png,
        "--attention-line",
        "2",
        "--layer",
        "1",
        "--head",
        "2",
    )
    assert result.exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(
        cli,
        [
            "decode",
            str(assets["seq2seq"]),
            "-i",
            str(tmp_path / "in.txt"),
            "--attention",
            str(png),
            "--layer",
            "3",
        ],
    )
    assert "layers 1..2" in str(bad.exception)
    bad = CliRunner().invoke(
        cli,
        [
            "decode",
            str(assets["seq2seq"]),
            "-i",
            str(tmp_path / "in.txt"),
            "--mode",
            "greedy",
            "--attention",
            str(png),
            "--attention-line",
            "5",
        ],
    )
    assert "only 2 lines" in str(bad.exception)


def test_fill_mask_text_and_jsonl(assets):
    line = "the cat <mask> on the <mask>\nno mask here\n"
    result = invoke(assets["mlm"], "--topk", "3", input=line)
    out = result.stdout.splitlines()
    assert len(out) == 4  # filled line + 2 candidate lines, then the unmasked line
    assert out[1].startswith("  <mask> 1: ") and out[2].startswith("  <mask> 2: ")
    assert out[3] == "no mask here"
    records = [
        json.loads(x)
        for x in invoke(
            assets["mlm"], "--format", "jsonl", "--topk", "3", input=line
        ).stdout.splitlines()
    ]
    assert [len(r["masks"]) for r in records] == [2, 0]
    for cands in records[0]["masks"]:
        probs = [c["prob"] for c in cands]
        assert len(cands) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1
    assert "<mask>" not in records[0]["filled"]


@pytest.mark.parametrize(
    ("which", "args", "message"),
    [
        ("mlm", ["--mode", "beam"], "masked-LM checkpoint"),
        ("mlm", ["--reference", "ref.txt"], "needs a seq2seq checkpoint"),
        ("mlm", ["--beam", "4"], "--beam is a translation search setting"),
        ("mlm", ["--no-repeat-ngram", "2"], "--no-repeat-ngram is a translation search"),
        ("seq2seq", ["--mode", "fill-mask"], "needs a masked-LM checkpoint"),
        ("seq2seq", ["--mode", "greedy", "--nbest", "2"], "needs --mode beam or sample"),
        ("seq2seq", ["--beam", "2", "--nbest", "3"], "exceeds the beam"),
    ],
)
def test_refusals(assets, which, args, message):
    result = CliRunner().invoke(cli, ["decode", str(assets[which]), *args], input="a cat\n")
    assert result.exit_code != 0
    assert message in str(result.exception)


def test_interactive_prompt(assets, monkeypatch):
    from tfcli import console

    monkeypatch.setattr(console, "is_interactive_stdin", lambda: True)
    result = invoke(assets["seq2seq"], "--mode", "greedy", input="the cat\nthe dog\n")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2
    assert "> > > \n" in result.stderr  # one prompt per line, plus the one Ctrl-D answers


def test_missing_checkpoint_is_one_line(tmp_path):
    exe = Path(sys.executable).with_name("tfcli")
    proc = subprocess.run(
        [str(exe), "decode", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("Error: no such checkpoint or run directory")


def test_mask_predict_is_the_default_for_nat_and_matches_the_library(assets, tmp_path):
    from tfcli.decoding.mask_predict import MaskPredictTranslator
    from tfcli.recipe.schema import DecodeConfig, SearchMode

    lines = corpus(9, seed=3)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(lines) + "\n")
    res = invoke(assets["nat"], "-i", tmp_path / "in.txt", "--format", "jsonl", "--nbest", "2",
                 "--iterations", "3", "--length-beam", "2", "--max-tokens", "40")  # fmt: skip
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert "mask-predict" in res.stderr and [r["line"] for r in records] == list(range(1, 10))
    cfg = DecodeConfig(mode=SearchMode.MASK_PREDICT, iterations=3, length_beam=2, nbest=2,
                       max_len_a=1.0, max_len_b=3)  # fmt: skip
    tr = MaskPredictTranslator(assets["nat_model"], assets["tok"], assets["tok"], cfg)
    expected = tr.translate_chunk(lines)
    assert [[h["ids"] for h in r["hypotheses"]] for r in records] == [
        [h.tokens for h in t.hypotheses] for t in expected
    ]
    scored = invoke(assets["nat"], "-i", tmp_path / "in.txt", "--reference", tmp_path / "ref.txt",
                    "--json", "--iterations", "1")  # fmt: skip
    summary = json.loads(scored.stdout)
    assert summary["mode"] == "mask-predict" and "bleu" in summary and summary["sentences"] == 9
    (tmp_path / "len.txt").write_text("\n".join(str(i % 4 + 1) for i in range(9)) + "\n")
    fixed = invoke(assets["nat"], "-i", tmp_path / "in.txt", "--lengths", tmp_path / "len.txt",
                   "--format", "jsonl")  # fmt: skip
    got = [len(json.loads(line)["hypotheses"][0]["ids"]) for line in fixed.stdout.splitlines()]
    assert got == [i % 4 + 1 for i in range(9)]
    forced = invoke(assets["nat"], "-i", tmp_path / "in.txt", "--format", "jsonl",
                    "--iterations", "6", "--force-iterations")  # fmt: skip
    cfg = DecodeConfig(mode=SearchMode.MASK_PREDICT, iterations=6, force_iterations=True,
                       max_len_a=1.0, max_len_b=3)  # fmt: skip
    tr = MaskPredictTranslator(assets["nat_model"], assets["tok"], assets["tok"], cfg)
    assert [json.loads(line)["hypotheses"][0]["ids"] for line in forced.stdout.splitlines()] == [
        t.hypotheses[0].tokens for t in tr.translate_chunk(lines)
    ]


@pytest.mark.parametrize(
    ("which", "args", "message"),
    [
        ("nat", ["--mode", "beam"], "--mode beam: this checkpoint is non-autoregressive"),
        ("nat", ["--mode", "greedy"], "decodes every token at once with --mode mask-predict"),
        ("nat", ["--beam", "4"], "--beam is not a mask-predict setting"),
        ("nat", ["--attention", "a.png"], "--attention is not a mask-predict setting"),
        ("nat", ["--nbest", "3", "--length-beam", "2"], "exceeds the 2 length candidate(s)"),
        ("nat", ["--length-ratio", "1.2", "--nbest", "2"], "exceeds the 1 length candidate(s)"),
        ("nat", ["--lengths", "nope.txt"], "--lengths nope.txt: no such file"),
        ("seq2seq", ["--mode", "mask-predict"], "needs a non-autoregressive checkpoint"),
        ("seq2seq", ["--iterations", "4"], "--iterations is a mask-predict setting"),
        ("seq2seq", ["--force-iterations"], "--force-iterations is a mask-predict setting"),
        ("mlm", ["--iterations", "4"], "--iterations is a translation search setting"),
    ],
)
def test_decoder_kind_refusals_are_one_line(assets, which, args, message, tmp_path):
    result = CliRunner().invoke(cli, ["decode", str(assets[which]), *args], input="a cat\n")
    assert result.exit_code != 0
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_decoding_on_cpu_keeps_freed_memory(assets, monkeypatch):
    """`tfcli decode` on CPU raises glibc's thresholds first (tfcli.allocator): every beam step
    and mask-predict pass then reuses its freed tensors instead of faulting fresh pages."""
    import tfcli.allocator

    calls = []
    monkeypatch.setattr(
        tfcli.allocator, "keep_freed_memory", lambda device: calls.append(1) or True
    )
    result = invoke(assets["seq2seq"], "--device", "cpu", input="one two\n")
    assert result.exit_code == 0, result.output
    assert calls == [1]

"""`tfcli export --to ctranslate2` and `tfcli decode --engine ctranslate2`: CTranslate2 decodes
what tfcli decodes (float32: the same outputs; int8: BLEU within 1), through the same command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli, main
from tfcli.decoding.ctranslate2_engine import CTranslate2Translator
from tfcli.decoding.metrics import bleu_chrf
from tfcli.decoding.translate import Translator
from tfcli.export.meta import read_export
from tfcli.recipe.schema import DecodeConfig, SearchMode

pytest.importorskip("ctranslate2")


def export(checkpoint, out, quantization="float32") -> None:
    args = [
        "export",
        str(checkpoint),
        "--to",
        "ctranslate2",
        str(out),
        "--quantization",
        quantization,
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def ct2(demo, tmp_path_factory) -> dict:
    """The trained demo model in float32 and int8 (slow: needs `demo`)."""
    root = tmp_path_factory.mktemp("ct2")
    for q in ("float32", "int8"):
        export(demo["checkpoint"], root / q, q)
    return {"float32": root / "float32", "int8": root / "int8"}


@pytest.fixture(scope="module")
def ct2_post(assets, tmp_path_factory):
    """A random post-norm model's float32 export (fast)."""
    out = tmp_path_factory.mktemp("ct2-post") / "m"
    export(assets["post"], out)
    return out


def both(checkpoint, directory, lines, cfg) -> tuple[list, list]:
    model, meta = ckpt.load_model(checkpoint)
    toks = ckpt.load_tokenizers(meta)
    ours = Translator(model, toks["src"], toks["tgt"], cfg).translate_chunk(lines)
    engine = CTranslate2Translator(directory, read_export(directory), cfg, threads=1)
    return ours, engine.translate_chunk(lines)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "beam"), [("greedy", 1), ("beam", 4)])
def test_float32_equals_tfcli_and_int8_keeps_bleu(demo, ct2, mode, beam):
    cfg = DecodeConfig(mode=SearchMode(mode), beam_size=beam)
    lines, refs = demo["src"], demo["ref"]
    ours, theirs = both(demo["checkpoint"], ct2["float32"], lines, cfg)
    same = sum(
        a.hypotheses[0].tokens == b.hypotheses[0].tokens for a, b in zip(ours, theirs, strict=True)
    )
    assert same >= 0.99 * len(lines)
    bleu = bleu_chrf([t.texts[0] for t in ours], refs)["bleu"]
    assert abs(bleu_chrf([t.texts[0] for t in theirs], refs)["bleu"] - bleu) <= 0.2
    _, int8 = both(demo["checkpoint"], ct2["int8"], lines, cfg)
    assert abs(bleu_chrf([t.texts[0] for t in int8], refs)["bleu"] - bleu) <= 1.0


@pytest.mark.parametrize("name", ["learned_post", "two_vocab"])
def test_what_hf_cannot_take_converts_exactly(assets, tmp_path, name):
    demo = assets
    """Post-norm with learned positions, and separate vocabularies: CTranslate2 holds both."""
    export(demo[name], tmp_path / "m")
    record = read_export(tmp_path / "m")
    assert record["max_logprob_diff"] < 1e-4
    if name == "two_vocab":
        assert record["tokenizer"]["files"] == {
            "src": "source_tokenizer.json",
            "tgt": "target_tokenizer.json",
        }
    ours, theirs = both(
        demo[name], tmp_path / "m", demo["src"][:40], DecodeConfig(mode=SearchMode.GREEDY)
    )
    assert [a.hypotheses[0].tokens for a in ours] == [b.hypotheses[0].tokens for b in theirs]


def decode(args, capsys) -> tuple[int, str, str]:
    try:
        main(["decode", *map(str, args)])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_decode_command_converts_once_into_the_cache(assets, tmp_path, capsys, monkeypatch):
    demo = {**assets, "checkpoint": assets["post"]}  # random weights, ending at varied lengths
    monkeypatch.setenv("TFCLI_CACHE_DIR", str(tmp_path / "cache"))
    common = [
        "--mode",
        "greedy",
        "-i",
        demo["src_file"],
        "--reference",
        demo["ref_file"],
        "--json",
        "--threads",
        "1",
    ]
    code, torch_out, _ = decode([demo["checkpoint"], *common, "-o", tmp_path / "t.txt"], capsys)
    assert code == 0
    code, ct2_out, err = decode(
        [demo["checkpoint"], "--engine", "ctranslate2", *common, "-o", tmp_path / "c.txt"], capsys
    )
    assert code == 0 and "converted" in err
    [entry] = list((tmp_path / "cache" / "ctranslate2").iterdir())
    assert entry.name.endswith("-float32")
    code, _, err = decode(
        [demo["checkpoint"], "--engine", "ctranslate2", *common, "-o", tmp_path / "c2.txt"], capsys
    )
    assert code == 0 and "converted" not in err  # the cache is reused
    a, b = json.loads(torch_out), json.loads(ct2_out)
    assert abs(a["bleu"] - b["bleu"]) <= 0.2 and a["sentences"] == b["sentences"]
    t, c = (
        (tmp_path / "t.txt").read_text().splitlines(),
        (tmp_path / "c.txt").read_text().splitlines(),
    )
    assert len(t) == len(c) == len(demo["src"])
    assert sum(x == y for x, y in zip(t, c, strict=True)) >= 0.99 * len(t)


def test_decode_an_export_dir_with_nbest_jsonl_in_input_order(assets, ct2_post, tmp_path, capsys):
    demo = assets
    src = tmp_path / "in.txt"
    lines = demo["src"][:6]
    src.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n", encoding="utf-8")
    args = [
        ct2_post,
        "--engine",
        "ctranslate2",
        "-i",
        src,
        "--format",
        "jsonl",
        "--beam",
        "4",
        "--nbest",
        "3",
    ]
    code, out, _ = decode(args, capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["source"] for r in records] == [lines[0], "", *lines[1:]]
    assert all(len(r["hypotheses"]) == 3 for i, r in enumerate(records) if i != 1)
    scores = [h["score"] for h in records[0]["hypotheses"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--engine", "ctranslate2", "--attention", "a.png"], "--attention needs --engine torch"),
        (["--quantization", "int8"], "--quantization needs --engine ctranslate2"),
        (["--engine", "ctranslate2", "--device", "mps"], "--device mps"),
    ],
)  # fmt: skip
def test_decode_refusals_are_one_line(assets, capsys, args, named):
    code, _, err = decode([assets["post"], "-i", assets["src_file"], *args], capsys)
    assert code != 0 and named in err and len(err.strip().splitlines()) == 1


def test_models_ctranslate2_cannot_run_are_refused(assets, ct2_post, tmp_path, capsys):
    demo = assets
    code, _, err = decode([demo["mlm"], "--engine", "ctranslate2", "-i", demo["src_file"]], capsys)
    assert code != 0 and "masked-LM" in err
    code, _, err = decode([ct2_post, "-i", demo["src_file"]], capsys)
    assert code != 0 and "--engine ctranslate2" in err
    with pytest.raises(SystemExit):
        main(["export", str(demo["rotary"]), "--to", "ctranslate2", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert "model.positions: rotary" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()

"""`tfcli export --to hf`: transformers loads it and computes what tfcli computes (logits,
greedy and beam outputs, fill-mask candidates, tokenizer ids and text)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli, main
from tfcli.decoding.fill_mask import NOT_A_FILLER
from tfcli.decoding.translate import MaskFiller, Translator, pad_batch
from tfcli.export.hf import generate_kwargs, generated_ids
from tfcli.recipe.schema import DecodeConfig, SearchMode
from tfcli.tokenizer.vocab import BOS, EOS, PAD

transformers = pytest.importorskip("transformers")


def export(checkpoint, out) -> None:
    r = CliRunner().invoke(cli, ["export", str(checkpoint), "--to", "hf", str(out)])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory):
    """export(checkpoint) -> its HF directory, exported once per module."""
    root, done = tmp_path_factory.mktemp("hf"), {}

    def get(checkpoint):
        if checkpoint not in done:
            done[checkpoint] = root / f"e{len(done)}"
            export(checkpoint, done[checkpoint])
        return done[checkpoint]

    return get


def teacher_forced(tok, src_lines, tgt_lines):
    src = pad_batch([[*tok.encode(s).ids, EOS] for s in src_lines], torch.device("cpu"))
    tgt = pad_batch([[BOS, *tok.encode(t).ids] for t in tgt_lines], torch.device("cpu"))
    return src, tgt


@pytest.mark.parametrize(
    ("name", "arch"),
    [pytest.param("checkpoint", "Pegasus", marks=pytest.mark.slow), ("post", "Marian")],
)
def test_logits_equal_tfcli(request, hf_export, name, arch):
    """Pegasus: the trained demo model (pre-norm); Marian: a random post-norm one."""
    demo = request.getfixturevalue("demo" if name == "checkpoint" else "assets")
    model, meta = ckpt.load_model(demo[name])
    tok = ckpt.load_tokenizers(meta)["src"]
    directory = hf_export(demo[name])
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    assert arch in type(hf).__name__
    src, tgt_in = teacher_forced(tok, demo["src"][:16], demo["ref"][:16])
    with torch.inference_mode():
        ours = model(src, tgt_in)
        theirs = hf(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt_in).logits
    real = tgt_in != PAD
    assert (ours - theirs)[real].abs().max().item() < 1e-4
    record = json.loads((directory / "tfcli.json").read_text())
    assert record["architecture"].startswith(arch) and record["max_logit_diff"] < 1e-4


EDGE = [
    "",
    "a",
    "She sold seventy-nine boats",
    "  two  spaces  ",
    "数字 ✓ 🙂",
    "L'été, 15 janvier.",
]


def test_auto_tokenizer_gives_tfcli_ids_and_text(assets, hf_export):
    demo = assets
    tok = ckpt.load_tokenizers(assets["meta"])["src"]
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf_export(assets["post"]))
    for line in EDGE + demo["src"][:20] + demo["ref"][:20]:
        ids = tok.encode(line).ids
        assert hf_tok(line).input_ids == [*ids, EOS]  # a source, as collate frames it
        assert hf_tok.decode([*ids, EOS], skip_special_tokens=True) == tok.decode(ids)
    mlm_tok = transformers.AutoTokenizer.from_pretrained(hf_export(assets["mlm"]))
    line = "Elle a vendu <mask> bateaux"
    assert mlm_tok(line).input_ids == [BOS, *tok.encode(line).ids, EOS]
    assert mlm_tok.mask_token_id == 4 and mlm_tok.pad_token_id == PAD


def tfcli_outputs(checkpoint, lines, beam: int, max_len: int) -> list[list[int]]:
    model, meta = ckpt.load_model(checkpoint)
    tok = ckpt.load_tokenizers(meta)["src"]
    mode = SearchMode.BEAM if beam > 1 else SearchMode.GREEDY
    cfg = DecodeConfig(mode=mode, beam_size=beam, max_len_a=0.0, max_len_b=max_len)
    return [t.hypotheses[0].tokens for t in Translator(model, tok, tok, cfg).translate_chunk(lines)]


def hf_outputs(directory, lines, beam: int, max_len: int) -> list[list[int]]:
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    out = []
    with torch.inference_mode():
        for i in range(0, len(lines), 16):
            batch = hf_tok(lines[i : i + 16], return_tensors="pt", padding=True)
            out += generated_ids(hf.generate(**batch, **generate_kwargs(beam, 1.0, max_len)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("name", ["checkpoint", "post"])
def test_generate_equals_tfcli_decode_token_for_token(demo, hf_export, name, beam):
    """The whole demo test split (120 sentences). One known edge case: a hypothesis cut at the
    length limit, where HF scores the forced </s> as log-prob 0 and tfcli (like fairseq) keeps
    the model's own, can rank beams differently: allowed for sentences at the limit only (the
    300-step test model may loop on a sentence or two; a well-trained one never reaches it)."""
    lines, max_len = demo["src"], 40
    ours = tfcli_outputs(demo[name], lines, beam, max_len)
    theirs = hf_outputs(hf_export(demo[name]), lines, beam, max_len)
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    at_limit = [i for i in differ if max(len(ours[i]), len(theirs[i])) >= max_len]
    assert differ == at_limit, f"{len(differ)} of {len(lines)} differ"
    assert len(differ) <= 0.02 * len(lines)


@pytest.mark.parametrize(("name", "arch"), [("mlm", "MegatronBert"), ("mlm_rotary", "Esm")])
def test_fill_mask_top_k_equals_hf_pipeline(assets, hf_export, name, arch):
    demo = assets
    model, meta = ckpt.load_model(demo[name])
    tok = ckpt.load_tokenizers(meta)["src"]
    lines = [r.replace(r.split()[1], "<mask>", 1) for r in demo["ref"][:12] if len(r.split()) > 2]
    ours = list(MaskFiller(model, tok, 5, 4000).fill(lines))
    hf = transformers.AutoModelForMaskedLM.from_pretrained(hf_export(demo[name])).eval()
    assert type(hf).__name__.startswith(arch)
    ids = pad_batch([t.ids for t in ours], torch.device("cpu"))
    with torch.inference_mode():
        diff = model(ids) - hf(input_ids=ids, attention_mask=(ids != PAD).long()).logits
    assert diff[ids != PAD].abs().max().item() < 1e-4
    fill = transformers.pipeline(
        "fill-mask", model=str(hf_export(demo[name])), top_k=10, device="cpu"
    )
    for filled, line in zip(ours, lines, strict=True):
        # tfcli never offers a special token as a word (their probability is left out, not
        # redistributed); HF's pipeline may, so its specials are dropped before comparing
        theirs = [c for c in fill(line) if c["token"] not in NOT_A_FILLER][:5]
        assert [c["token"] for c in theirs] == [t for t, _, _ in filled.candidates[0]]
        assert [c["score"] for c in theirs] == pytest.approx(
            [p for _, _, p in filled.candidates[0]], abs=1e-5
        )


@pytest.mark.parametrize(
    ("name", "named"),
    [("rotary", "model.positions: rotary"), ("learned_post", "model.positions: learned"),
     ("mlm_post", "model.norm: post")],
)  # fmt: skip
def test_refusals_are_one_line_and_write_nothing(assets, tmp_path, capsys, name, named):
    demo = assets
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["export", str(demo[name]), "--to", "hf", str(out)])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and err.startswith("Error:") and named in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_a_foreign_directory_is_never_replaced(assets, tmp_path, capsys):
    demo = assets
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        main(["export", str(demo["post"]), "--to", "hf", str(out)])
    assert "not a tfcli export" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"

"""`tfcli export`: a trained checkpoint as an HF transformers or CTranslate2 model directory."""

from __future__ import annotations

from pathlib import Path

import click

from tfcli import console

QUANTIZATIONS = ("int8", "int16", "float16", "bfloat16", "float32")


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), metavar="CHECKPOINT")
@click.option(
    "--to", "target", type=click.Choice(["hf", "ctranslate2"]), required=True,
    help="hf: a transformers from_pretrained directory; ctranslate2: a CTranslate2 model.",
)  # fmt: skip
@click.argument("out_dir", type=click.Path(path_type=Path), metavar="OUT_DIR")
@click.option(
    "--quantization", type=click.Choice(QUANTIZATIONS),
    help="--to ctranslate2: weight type (default float32); int8 is the fast CPU choice.",
)  # fmt: skip
def export(checkpoint: Path, target: str, out_dir: Path, quantization: str | None) -> None:
    """Export CHECKPOINT (a .safetensors file or a run directory: its best checkpoint) to OUT_DIR.

    --to hf writes config.json, model.safetensors, generation_config.json and a fast tokenizer
    (the checkpoint's own tokenizer.json; it adds </s> to sources, or <s> ... </s> for a masked
    LM, as tfcli does): AutoModelForSeq2SeqLM / AutoModelForMaskedLM and AutoTokenizer load it.
    A post-norm translation model becomes MarianMTModel, a pre-norm one Pegasus, a pre-norm GELU
    masked LM MegatronBertForMaskedLM (EsmForMaskedLM with rotary positions). --to ctranslate2
    converts with CTranslate2's own converter (optionally quantized); `tfcli decode --engine
    ctranslate2 OUT_DIR` then decodes with it.

    Every export is exact (checked by reloading it and comparing logits before OUT_DIR appears);
    a setting with no exact equivalent (relative or ALiBi positions, Linformer, additive
    attention, a window, a post-norm masked LM, ...) is refused with one line naming it. OUT_DIR
    is replaced whole if it is an earlier export, and refused if it holds anything else. Needs
    pip install 'tfcli[export]'.

    \b
    Examples:
      tfcli export runs/demo-tiny --to hf exported/demo-hf
      tfcli export runs/demo-tiny --to ctranslate2 exported/demo-ct2 --quantization int8
      tfcli decode exported/demo-ct2 --engine ctranslate2 -i demo/test.src --reference demo/test.tgt
      tfcli export runs/demo-mlm --to hf exported/mlm-hf     # EsmForMaskedLM (rotary)
    """
    from tfcli.checkpoints.steps import resolve_checkpoint
    from tfcli.errors import TfcliError
    from tfcli.export.meta import check_out_dir

    path = resolve_checkpoint(checkpoint)
    _check_supported(path, target)  # a refusal is the only line printed
    check_out_dir(out_dir)
    if target == "hf":
        if quantization is not None:
            raise TfcliError("--quantization applies to --to ctranslate2; HF exports keep float32")
        _require("transformers", "--to hf")
        from tfcli.export.hf import export_hf

        console.step(f"export: {path} -> {out_dir} (HF transformers)")
        record = export_hf(path, out_dir)
        check = f"max |logit diff| {record['max_logit_diff']:.1e}"
    else:
        from tfcli.export.ctranslate2 import export_ctranslate2

        q = quantization or "float32"
        console.step(f"export: {path} -> {out_dir} (CTranslate2, {q})")
        record = export_ctranslate2(path, out_dir, q)
        diff = record.get("max_logprob_diff")
        check = f"max |log-prob diff| {diff:.1e}" if diff is not None else f"{q} weights"
    console.success(f"{record['architecture']} written to {out_dir} ({check})")


def _check_supported(path: Path, target: str) -> None:
    from tfcli.checkpoints.files import read_meta
    from tfcli.export.support import check_ctranslate2, hf_target
    from tfcli.model.config import ModelSpec

    spec = ModelSpec.from_dict(read_meta(path).get("model"))
    if target == "hf":
        hf_target(spec)
    else:
        check_ctranslate2(spec)


def _require(module: str, flag: str) -> None:
    import importlib.util

    from tfcli.errors import TfcliError

    if importlib.util.find_spec(module) is None:
        raise TfcliError(f"{flag} needs {module}; pip install 'tfcli[export]'")

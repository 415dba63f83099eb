"""`tfcli quickstart`: the whole pipeline on the generated demo data, in one process.

demo data (if missing) -> tokenize -> encode -> train (demo-tiny) -> translate and score the
held-out test split -> short masked-LM pretraining (demo-mlm) -> fill-mask examples. Every stage
is the library call the matching command makes, so what quickstart shows is what the commands do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.recipe.schema import Device, Recipe
from tfcli.run_dir import RunDir

# Where the test split's translations go (RUN_DIR/test.hyp): quickstart's own file, not one
# that any other command reads or writes.
TEST_HYPOTHESES = "test.hyp"

# Source words that show a French rule the model had to learn (the first test line with each
# is shown): 70-99 built on soixante / quatre-vingt, 'et un' and feminine 'une', le 1er.
_SHOWCASE = (
    "seventy",
    "eighty-one",
    "eighty ",
    "ninety",
    "-one ",
    "one thousand",
    "thousand",
    " 1,",
)
_DATA_KEYS = ("src", "tgt", "valid_src", "valid_tgt", "test_src", "test_tgt", "text", "valid_text")
FILL_EXAMPLES = (  # each masked word is predictable from its context after a short pretraining
    "Il y a deux pommes <mask> le jardin",
    "My father is fifty years <mask>",
    "Elle a vendu trois <mask> pommes",
    "The wedding was on <mask> 4 , 1987",
)


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where demo/ and runs/ go (relative recipe paths resolve inside it).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a demo-tiny (translation) value, e.g. --set train.max_steps=300.",
)
@click.option(
    "--mlm-set",
    "mlm_overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a demo-mlm (masked-LM) value, e.g. --mlm-set train.max_steps=100.",
)
@click.option("--no-mlm", is_flag=True, help="Skip the masked-LM pretraining part.")
@click.option(
    "--device",
    type=click.Choice([d.value for d in Device]),
    default=None,
    help="auto (cuda, then mps, then cpu) | cpu | cuda | mps (both parts).",
)
@click.option(
    "--size",
    type=click.Choice(["small", "full"]),
    default="full",
    show_default=True,
    help="Demo data size, when demo/ must be generated (small: a smoke test).",
)
def quickstart(
    workdir: Path,
    overrides: tuple[str, ...],
    mlm_overrides: tuple[str, ...],
    no_mlm: bool,
    device: str | None,
    size: str,
) -> None:
    """Run the whole pipeline on generated demo data: a few minutes on 2 CPU cores.

    Writes the demo corpora (English -> French, numbers spelt out) unless DIR/demo/ holds them,
    trains the demo-tiny translation model (tokenizing and encoding first), translates the
    held-out test split and scores it with sacreBLEU, then pretrains the small demo-mlm masked
    LM and fills a few masks. Each part starts over in its own run dir (runs/demo-tiny,
    runs/demo-mlm); afterwards every artefact is there to inspect or decode with.

    \b
    Examples:
      tfcli quickstart
      tfcli quickstart --dir /tmp/tfcli-demo --device cuda
      tfcli quickstart --set train.max_steps=200 --no-mlm     # a faster, rougher run
      tfcli quickstart --set model.d_model=256 --set model.n_heads=8
    \b
    Then look around:
      tfcli inspect runs/demo-tiny
      tfcli decode runs/demo-tiny       # type English sentences, get French
      echo "She is ten years <mask>" | tfcli decode runs/demo-mlm
    """
    started = time.perf_counter()
    flags = {"train.device": device}
    mt = demo_recipe("demo-tiny", overrides, workdir, flags)
    mlm = None if no_mlm else demo_recipe("demo-mlm", mlm_overrides, workdir, flags)
    rows: list[tuple[str, str, str]] = []

    def stage(name: str, run: Callable[[], str]) -> None:
        t = time.perf_counter()
        what = run()
        rows.append((name, f"{time.perf_counter() - t:.0f} s", what))

    stage("demo data", lambda: _ensure_demo(workdir / "demo", size))
    stage("train demo-tiny", lambda: _train_translation(mt))
    stage("translate test", lambda: _score_test(mt))
    if mlm is not None:
        stage("pretrain demo-mlm", lambda: _pretrain_and_fill(mlm))
    rows.append(("total", f"{time.perf_counter() - started:.0f} s", ""))
    console.show(console.table("Quickstart", rows, ["stage", "time", "result"]))
    runs = f"translation run: {mt.run_dir}" + (f"; masked-LM run: {mlm.run_dir}" if mlm else "")
    console.success(runs)
    console.info(f"next: [bold]tfcli decode {mt.run_dir}[/] (type English, get French)")


def _ensure_demo(demo_dir: Path, size: str) -> str:
    """Write the demo corpora unless every file is already there."""
    from tfcli.demo import DEFAULT_SIZES, DEMO_FILES, SMALL_SIZES, write_demo

    if all((demo_dir / name).is_file() for name in DEMO_FILES):
        console.step(f"quickstart: using the demo data in {demo_dir}")
        return f"{demo_dir} (already there)"
    console.step(f"quickstart: generating demo data in {demo_dir}")
    sizes = SMALL_SIZES if size == "small" else DEFAULT_SIZES
    write_demo(demo_dir, **sizes)
    return f"{demo_dir} ({sizes['n_train']:,} pairs)"


def demo_recipe(
    name: str, overrides: tuple[str, ...], workdir: Path, flags: dict[str, Any]
) -> Recipe:
    """The bundled recipe with `--set` overrides and flags; relative paths moved under workdir."""
    from tfcli.commands.options import load_recipe

    r = load_recipe(name, overrides, None, **flags)
    if workdir != Path("."):
        r.run_dir = _under(workdir, r.run_dir)
        for key in _DATA_KEYS:
            setattr(r.data, key, [_under(workdir, p) for p in getattr(r.data, key)])
    return r


def _under(workdir: Path, path: str) -> str:
    return path if Path(path).is_absolute() else str(workdir / path)


def _train_translation(r: Recipe) -> str:
    """tokenize + encode + train, exactly as `tfcli train` does (starting the run over)."""
    from tfcli.training import setup

    _announce_restart(r)
    summary = setup.train_seq2seq(r, resume=False, force=True)
    setup.show_summary(summary, f"train: {r.run_dir}")
    setup.raise_if_interrupted(summary, None)  # quickstart starts over: nothing to resume
    best = summary.get("best")
    if not best:
        return f"{summary['steps']} updates, no validation"
    return f"valid {best['metric']} {best['value']:.1f} at step {best['step']}"


def _announce_restart(r: Recipe) -> None:
    from tfcli.checkpoints import steps as run_checkpoints

    if run_checkpoints.list_checkpoints(Path(r.run_dir)):
        console.warn(f"{r.run_dir} holds an earlier run; quickstart starts it over")


def _score_test(r: Recipe) -> str:
    """Translate data.test_src with the best checkpoint, write RUN_DIR/test.hyp, score it."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints import steps as run_checkpoints
    from tfcli.decoding.metrics import bleu_chrf
    from tfcli.decoding.translate import Translator
    from tfcli.device import pick_device
    from tfcli.textio import atomic_write_text, expand_inputs, iter_files

    sources = list(iter_files(expand_inputs(r.data.test_src, "data.test_src")))
    references = list(iter_files(expand_inputs(r.data.test_tgt, "data.test_tgt")))
    path = run_checkpoints.resolve_checkpoint(Path(r.run_dir))
    model, meta = ckpt.load_model(path, pick_device(r.train.device))
    toks = ckpt.load_tokenizers(meta)
    console.step(
        f"quickstart: translating {len(sources):,} test sentences ({r.decode.mode.value}) with {path}"
    )
    translator = Translator(model, toks["src"], toks["tgt"], r.decode)
    hyps = [t.texts[0] for t in translator.translate(sources)]
    hyp_path = Path(r.run_dir) / TEST_HYPOTHESES
    atomic_write_text(hyp_path, "".join(h + "\n" for h in hyps))
    scores = bleu_chrf(hyps, references)
    rows = [
        (sources[i], references[i], hyps[i], "✓" if hyps[i] == references[i] else "✗")
        for i in showcase_lines(sources)
    ]
    console.show(
        console.table(
            "Test translations (English -> French)", rows, ["source", "reference", "tfcli", ""]
        )
    )
    exact = sum(h == ref for h, ref in zip(hyps, references, strict=True))
    console.info(
        f"test: BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f}, {exact}/{len(hyps)} sentences exact "
        f"({scores['bleu_signature']}); hypotheses in {hyp_path}"
    )
    return f"BLEU {scores['bleu']:.1f}, chrF {scores['chrf']:.1f} ({exact}/{len(hyps)} exact)"


def showcase_lines(sources: list[str], n: int = 4) -> list[int]:
    """Indices of up to n test lines, each showing a different rule."""
    picked: list[int] = []
    for word in _SHOWCASE:
        hit = next((i for i, s in enumerate(sources) if word in s and i not in picked), None)
        if hit is not None:
            picked.append(hit)
        if len(picked) == n:
            break
    return picked or list(range(min(n, len(sources))))


def _pretrain_and_fill(r: Recipe) -> str:
    """pretrain-mlm on the mono text, then fill FILL_EXAMPLES; returns the accuracy line."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints import steps as run_checkpoints
    from tfcli.decoding.translate import MaskFiller
    from tfcli.device import pick_device
    from tfcli.training import setup

    _announce_restart(r)
    summary = setup.pretrain_mlm(r, resume=False, force=True)
    setup.show_summary(summary, f"pretrain-mlm: {r.run_dir}")
    setup.raise_if_interrupted(summary, None)
    model, meta = ckpt.load_model(
        run_checkpoints.resolve_checkpoint(Path(r.run_dir)), pick_device(r.train.device)
    )
    tok = ckpt.load_tokenizers(meta)["src"]
    filler = MaskFiller(model, tok, topk=3, max_tokens=r.decode.max_tokens)
    rows = []
    for f in filler.fill(FILL_EXAMPLES):
        cands = (
            ", ".join(f"{piece.lstrip('▁')} {p:.2f}" for _, piece, p in f.candidates[0])
            if f.candidates
            else ""
        )
        rows.append((f.source, cands))
    console.show(console.table("Fill-mask (top 3 per <mask>)", rows, ["input", "candidates"]))
    accuracy = (summary.get("metrics") or {}).get("accuracy")
    baseline = _majority_baseline(RunDir(r.run_dir).split("valid"))
    if accuracy is None:
        return "no validation text"
    return f"masked-token accuracy {accuracy:.2f} (most frequent token: {baseline:.2f})"


def _majority_baseline(split_dir: Path) -> float:
    """Accuracy of always predicting the validation text's most frequent token."""
    import numpy as np

    from tfcli.data.split import open_split

    if not split_dir.is_dir():
        return float("nan")
    data = open_split(split_dir)
    ids = np.concatenate([data.text[i] for i in range(len(data.text))])
    return float(np.bincount(ids).max() / max(len(ids), 1)) if len(ids) else float("nan")

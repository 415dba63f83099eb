"""Root click group. Commands are registered lazily, in pipeline order, so `tfcli --help` never
imports torch; `main()` turns a TfcliError into one `Error:` line (TFCLI_DEBUG=1 shows the trace)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from tfcli import __version__

# name -> (module, function, one-line summary). Order is the pipeline's order.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "quickstart": (
        "tfcli.commands.quickstart",
        "quickstart",
        "Run the whole pipeline on generated demo data.",
    ),
    "demo-data": (
        "tfcli.commands.demo_data",
        "demo_data",
        "Write the bundled demo corpora (parallel + monolingual).",
    ),
    "tokenize": (
        "tfcli.commands.tokenize_cmd",
        "tokenize",
        "Train a subword vocabulary (BPE, WordPiece, Unigram).",
    ),
    "encode": (
        "tfcli.commands.encode",
        "encode",
        "Turn raw text into memory-mapped token-id shards.",
    ),
    "train": (
        "tfcli.commands.train",
        "train",
        "Train the encoder-decoder Transformer on parallel data.",
    ),
    "pretrain-mlm": (
        "tfcli.commands.pretrain_mlm",
        "pretrain_mlm",
        "BERT-style masked-LM pretraining of the encoder.",
    ),
    "inspect": (
        "tfcli.commands.inspect_cmd",
        "inspect",
        "Show what a checkpoint, tokenizer or encoded dataset holds.",
    ),
    "decode": (
        "tfcli.commands.decode",
        "decode",
        "Translate (greedy, beam, sampling) or fill masks; score BLEU/chrF.",
    ),
    "score": ("tfcli.commands.score", "score", "Score given translations (forced decoding)."),
    "evaluate": (
        "tfcli.commands.evaluate",
        "evaluate",
        "Loss, perplexity and BLEU/chrF of a test set.",
    ),
    "serve": (
        "tfcli.commands.serve",
        "serve",
        "HTTP JSON server: /translate, /fill-mask, /health.",
    ),
    "average": ("tfcli.commands.average", "average", "Average the weights of several checkpoints."),
    "export": (
        "tfcli.commands.export",
        "export",
        "Export a checkpoint to HF transformers or CTranslate2 (exact, or refused).",
    ),
    "recipes": ("tfcli.commands.recipes_cmd", "recipes", "List, show or copy the bundled recipes."),
    "validate": (
        "tfcli.commands.recipes_cmd",
        "validate",
        "Check a recipe and print it fully resolved.",
    ),
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or its own --help is asked)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands (in pipeline order)"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="tfcli")
def cli() -> None:
    """Train Transformers from scratch: raw text -> subword vocabulary -> token-id shards ->
    trained encoder-decoder (or masked-LM) -> translations, scores and fill-mask.

    \b
    Try it on generated demo data (a few minutes on 2 CPU cores):
      tfcli quickstart
    \b
    Or step by step, driven by a YAML recipe:
      tfcli demo-data demo/
      tfcli train demo-tiny                      # tokenizes and encodes first if needed
      tfcli decode runs/demo-tiny --input demo/test.src --reference demo/test.tgt

    Every command takes a recipe (a file or a bundled name, see `tfcli recipes`) and
    `--set section.key=value` overrides. Set TFCLI_DEBUG=1 to see full tracebacks.
    """


def main(argv: list[str] | None = None) -> None:
    from tfcli.errors import TfcliError

    try:
        code = cli.main(args=argv, prog_name="tfcli", standalone_mode=False)
        if isinstance(code, int) and code != 0:  # ctx.exit(code) returns it in this mode
            sys.exit(code)
    except TfcliError as e:
        if os.environ.get("TFCLI_DEBUG"):
            raise
        from tfcli.console import error

        error(str(e))
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        from tfcli.console import error

        error("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        from tfcli.console import error

        error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:
        if os.environ.get("TFCLI_DEBUG"):
            raise
        from tfcli.console import error

        error(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
        sys.exit(1)

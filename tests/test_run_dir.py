"""RunDir: every name inside a run directory, in one place."""

from __future__ import annotations

from pathlib import Path

from tfcli.run_dir import RunDir, checkpoint_of_state, checkpoint_step, side_paths, state_path


def test_the_layout_of_a_run(tmp_path):
    run = RunDir(tmp_path / "run")
    root = tmp_path / "run"
    assert run.recipe == root / "recipe.yaml"
    assert run.tokenizers(True) == {"src": root / "tokenizer.json", "tgt": root / "tokenizer.json"}
    assert run.tokenizers(False)["tgt"] == root / "tokenizer.tgt.json"
    assert run.split("valid") == root / "data" / "valid"
    assert run.metrics == root / "metrics.jsonl" and run.tensorboard == root / "tensorboard"
    assert run.step(1000) == root / "checkpoints" / "step-00001000.safetensors"
    assert run.best == root / "checkpoints" / "best.safetensors"
    assert not root.exists()  # a RunDir is a value: nothing is created


def test_step_names_sort_and_parse_back():
    run = RunDir("r")
    names = [run.step(s).name for s in (20, 3, 100)]
    assert sorted(names) == [run.step(s).name for s in (3, 20, 100)]
    assert [checkpoint_step(run.step(s)) for s in (3, 20)] == [3, 20]
    assert checkpoint_step(run.best) is None and checkpoint_step(Path("x.safetensors")) is None
    state = state_path(run.step(7))
    assert state.name == "step-00000007.state.pt" and checkpoint_of_state(state) == run.step(7)


def test_the_run_a_path_belongs_to(tmp_path):
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    run.step(5).write_bytes(b"")
    assert RunDir.of(run.step(5)) == run
    assert RunDir.of(run.checkpoints) == run and RunDir.of(run.root) == run
    assert RunDir.of(tmp_path) is None


def test_side_paths_of_any_tokenizer_file():
    assert side_paths(Path("o/my.json"), False) == {
        "src": Path("o/my.src.json"),
        "tgt": Path("o/my.tgt.json"),
    }
    assert side_paths(Path("o/my.json"), True)["tgt"] == Path("o/my.json")

"""tfcli.data.pool: encode jobs give the same ids in worker processes as in this process, in
order, and small inputs stay in this process."""

from __future__ import annotations

from pathlib import Path

from tfcli.data.encoding import encode_parallel
from tfcli.data.pool import Runner, auto_workers, iter_jobs

ASSETS = Path(__file__).parents[1] / "assets"
TRAIN_SRC, TRAIN_TGT = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"

NOFILTER = {"min_len": 0, "max_len": 0, "show_progress": False}


def test_worker_processes_give_identical_files(tmp_path, tok_path):
    a = encode_parallel(
        [TRAIN_SRC],
        [TRAIN_TGT],
        tok_path,
        tok_path,
        tmp_path / "a",
        workers=1,
        chunk_lines=16,
        **NOFILTER,
    )
    b = encode_parallel(
        [TRAIN_SRC],
        [TRAIN_TGT],
        tok_path,
        tok_path,
        tmp_path / "b",
        workers=2,
        chunk_lines=16,
        **NOFILTER,
    )
    assert b["workers"] == 2
    for name in ("src.bin", "src.idx", "tgt.bin", "tgt.idx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["lengths"] == b["lengths"] and a["num_tokens"] == b["num_tokens"]


def test_runner_gives_the_jobs_results_in_order(tok_path):
    files = {"src": [TRAIN_SRC], "tgt": [TRAIN_TGT]}
    toks = {"src": tok_path, "tgt": tok_path}
    results = {}
    for workers in (1, 2):
        runner = Runner([str(tok_path)], workers)
        try:
            results[workers] = list(runner.map(iter_jobs(files, toks, chunk_lines=9)))
        finally:
            runner.close(ok=True)
    assert len(results[1]) == len(results[2]) == 15  # 128 lines in blocks of 9
    for inline, pooled in zip(results[1], results[2], strict=True):
        for (ids_a, len_a), (ids_b, len_b) in zip(inline, pooled, strict=True):
            assert ids_a.tolist() == ids_b.tolist() and len_a.tolist() == len_b.tolist()
    assert sum(len(lengths) for (_, lengths), _ in results[1]) == 128


def test_small_inputs_are_encoded_in_this_process():
    assert auto_workers({"src": [TRAIN_SRC], "tgt": [TRAIN_TGT]}) == 1

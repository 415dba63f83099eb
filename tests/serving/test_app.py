"""The HTTP API through FastAPI's TestClient / httpx: answers equal `tfcli decode`, concurrent
requests share decode batches and each gets its own answer, every refusal is a one-line 4xx."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from tfcli.cli import cli  # noqa: E402
from tfcli.serving.app import create_app  # noqa: E402
from tfcli.serving.batcher import Batcher  # noqa: E402
from tfcli.serving.engine import Engine  # noqa: E402
from tfcli.serving.schemas import Limits  # noqa: E402

WORDS = "the a cat dog bird sat ran sang on in at mat park song moon tonight big red".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def build(path, limits: Limits | None = None, **batcher_kw):
    engine = Engine.load([path], "cpu")
    batcher = Batcher(engine.process, **{"max_wait_ms": 2.0, **batcher_kw})
    return create_app(engine, batcher, limits or Limits()), engine, batcher


@pytest.fixture(scope="module")
def seq2seq(checkpoints):
    app, engine, batcher = build(checkpoints["seq2seq"], Limits(max_sentences=8, max_chars=200,
                                                               max_body_bytes=4000))  # fmt: skip
    with TestClient(app) as client:
        yield client, engine, batcher


def decode_cli(path, lines, *args) -> list[dict]:
    result = CliRunner().invoke(
        cli, ["decode", str(path), "--format", "jsonl", *args], input="\n".join(lines) + "\n"
    )
    assert result.exit_code == 0, result.output
    return [json.loads(x) for x in result.stdout.splitlines()]


def test_health(seq2seq, checkpoints):
    client, _, _ = seq2seq
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["kind"] == "seq2seq" and body["step"] == 7
    assert body["model"] == str(checkpoints["seq2seq"])
    assert body["decode"]["max_len_b"] == 4 and body["decode"]["mode"] == "beam"


@pytest.mark.parametrize(
    ("settings", "flags"),
    [
        ({}, []),
        ({"beam": 3, "nbest": 2}, ["--beam", "3", "--nbest", "2"]),
        ({"mode": "greedy"}, ["--mode", "greedy"]),
        (
            {"mode": "sample", "seed": 3, "top_k": 5},
            ["--mode", "sample", "--seed", "3", "--top-k", "5"],
        ),  # fmt: skip
    ],
)
def test_translations_equal_tfcli_decode(seq2seq, checkpoints, settings, flags):
    client, _, _ = seq2seq
    lines = corpus(6, seed=3)
    response = client.post("/translate", json={"sentences": lines, **settings})
    assert response.status_code == 200, response.text
    got = response.json()["results"]
    want = decode_cli(checkpoints["seq2seq"], lines, *flags)
    assert [r["source"] for r in got] == lines
    for g, w in zip(got, want, strict=True):
        assert [h["text"] for h in g["hypotheses"]] == [h["text"] for h in w["hypotheses"]]
        assert [h["ids"] for h in g["hypotheses"]] == [h["ids"] for h in w["hypotheses"]]
        assert [h["score"] for h in g["hypotheses"]] == pytest.approx(
            [h["score"] for h in w["hypotheses"]], abs=1e-5
        )


@pytest.fixture(scope="module")
def nat(checkpoints):
    app, engine, batcher = build(checkpoints["nat"])
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("settings", "flags"),
    [
        ({}, []),
        ({"iterations": 1, "length_beam": 3, "nbest": 3},
         ["--iterations", "1", "--length-beam", "3", "--nbest", "3"]),
        ({"mode": "mask-predict", "iterations": 10}, ["--iterations", "10"]),
    ],
)  # fmt: skip
def test_a_non_autoregressive_model_serves_mask_predict_as_tfcli_decode(
    nat, checkpoints, settings, flags
):
    lines = corpus(6, seed=4)
    response = nat.post("/translate", json={"sentences": lines, **settings})
    assert response.status_code == 200, response.text
    got = response.json()["results"]
    want = decode_cli(checkpoints["nat"], lines, *flags)
    assert [[h["ids"] for h in g["hypotheses"]] for g in got] == [
        [h["ids"] for h in w["hypotheses"]] for w in want
    ]
    assert nat.get("/health").json()["decode"]["mode"] == "mask-predict"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "beam"}, "mode: beam: this model is non-autoregressive"),
        ({"beam": 4}, "beam: not a mask-predict setting"),
        ({"constraints": [["x"]]}, "constraints: not a mask-predict setting"),
        ({"length_beam": 2, "nbest": 3}, "nbest: 3 exceeds the 2 length candidate(s)"),
        ({"iterations": 101}, "iterations: 101, at most 100"),
    ],
)
def test_mask_predict_refusals_are_one_line_400s(nat, seq2seq, body, message):
    response = nat.post("/translate", json={"sentences": ["a cat"], **body})
    assert response.status_code == 400 and response.json()["error"].startswith(message)
    client, _, _ = seq2seq
    for wrong in ({"mode": "mask-predict"}, {"iterations": 4}):
        response = client.post("/translate", json={"sentences": ["a cat"], **wrong})
        assert response.status_code == 400
        assert "a mask-predict setting; this model is autoregressive" in response.json()["error"]


def test_constraints_over_http(seq2seq):
    client, engine, _ = seq2seq
    body = {"sentences": ["the cat", "a dog sat"], "constraints": [["moon"], []], "beam": 4}
    got = client.post("/translate", json=body).json()["results"]
    moon = engine.toks["tgt"].encode("moon").ids
    ids = got[0]["hypotheses"][0]["ids"]
    assert any(ids[i : i + len(moon)] == moon for i in range(len(ids)))


async def _concurrent(app, bodies):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await asyncio.gather(*(client.post("/translate", json=b) for b in bodies))


def _without_scores(results: list[dict]) -> list[dict]:
    return [
        {**x, "hypotheses": [{k: v for k, v in h.items() if k != "score"} for h in x["hypotheses"]]}
        for x in results
    ]


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(checkpoints):
    app, engine, batcher = build(checkpoints["seq2seq"], max_wait_ms=500, max_requests=64)
    bodies = [{"sentences": corpus(1 + i % 3, seed=100 + i), "beam": 2} for i in range(12)]
    bodies[5] = {"sentences": corpus(2, seed=7), "mode": "greedy"}  # other settings, same batch
    bodies[8] = {"sentences": ["the cat"], "constraints": [["the " * 40]], "beam": 2}
    responses = asyncio.run(_concurrent(app, bodies))
    assert batcher.stats.batches < len(bodies) // 2, batcher.stats
    assert responses[8].status_code == 400 and "constraints are" in responses[8].json()["error"]
    with TestClient(app) as client:
        for i, (body, r) in enumerate(zip(bodies, responses, strict=True)):
            if i == 8:
                continue
            assert r.status_code == 200, r.text
            alone = client.post("/translate", json=body).json()["results"]  # a batch of its own
            # the same hypotheses; scores agree to float32 rounding (other rows pad the batch)
            assert _without_scores(r.json()["results"]) == _without_scores(alone)
            got = [h["score"] for x in r.json()["results"] for h in x["hypotheses"]]
            want = [h["score"] for x in alone for h in x["hypotheses"]]
            assert got == pytest.approx(want, abs=1e-5)
            assert [x["source"] for x in alone] == body["sentences"]
    batcher.close()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"sentences": ["a"], "colour": "red"}, 422, "colour: unknown field"),
        ({"sentences": "a cat"}, 422, "sentences: Input should be a valid list"),
        ({"sentences": ["a"], "beam": "4"}, 422, "beam: Input should be a valid integer"),
        ({"sentences": ["a"], "beam": 0}, 422, "beam: Input should be greater than or equal to 1"),
        ({"sentences": []}, 422, "sentences: List should have at least 1 item"),
        ({"sentences": [1]}, 422, "sentences.0: Input should be a valid string"),
        ({"sentences": ["a"], "mode": "fast"}, 422, "mode: Input should be 'greedy'"),
        ({"sentences": ["a"] * 9}, 400, "sentences: 9 given, at most 8 per request"),
        ({"sentences": ["a" * 201]}, 400, "sentences[0]: 201 characters, at most 200"),
        ({"sentences": ["a\nb"]}, 400, "without line breaks"),
        ({"sentences": ["a"], "beam": 2, "nbest": 3}, 400, "nbest: 3 exceeds the beam (2)"),
        ({"sentences": ["a"], "beam": 99}, 400, "beam: 99, at most 32"),
        ({"sentences": ["a"], "mode": "greedy", "nbest": 2}, 400, "needs mode beam or sample"),
        ({"sentences": ["a"], "constraints": [["x"]], "mode": "greedy"}, 400, "need mode beam"),
        ({"sentences": ["a"], "constraints": [["x"], []]}, 400, "2 lists for 1 sentences"),
        ({"sentences": ["a"] * 8, "pad": "x" * 4000}, 413, "body: over 4000 bytes"),
    ],
)
def test_bad_requests_are_one_line_4xx(seq2seq, body, status, message):
    client, _, _ = seq2seq
    response = client.post("/translate", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error


def test_malformed_json_unknown_paths_and_the_wrong_endpoint(seq2seq):
    client, _, _ = seq2seq
    r = client.post(
        "/translate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"].startswith("body: not valid JSON")
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    r = client.post("/fill-mask", json={"sentences": ["a <mask>"]})
    assert r.status_code == 400 and "POST /translate instead" in r.json()["error"]
    assert client.get("/translate").status_code == 405


def test_chunked_body_over_the_limit_is_413(seq2seq):
    client, _, _ = seq2seq

    def chunks():
        yield b'{"sentences": ["'
        for _ in range(10):
            yield b"a" * 500
        yield b'"]}'

    r = client.post("/translate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over 4000 bytes" in r.json()["error"]


def test_full_queue_is_503(checkpoints):
    import threading

    app, engine, batcher = build(checkpoints["seq2seq"], max_queue=1, max_requests=1)
    entered, gate = threading.Event(), threading.Event()
    real = engine.process
    batcher.process = lambda jobs: (entered.set(), gate.wait(10), real(jobs))[2]

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            post = lambda: asyncio.create_task(client.post("/translate", json={"sentences": ["a"]}))  # noqa: E731
            tasks = [post()]
            while not entered.is_set():  # the first request is being decoded (blocked)
                await asyncio.sleep(0.01)
            tasks += [post() for _ in range(3)]  # one waits in the queue, two are refused
            await asyncio.sleep(0.3)
            gate.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200, 200, 503, 503]
    assert "busy: 1 requests are waiting; retry later" == responses[2].json()["error"]
    batcher.close()


def test_fill_mask_equals_tfcli_decode(checkpoints):
    app, _, batcher = build(checkpoints["mlm"])
    lines = ["the <mask> sat on the mat", "no mask here", "a <mask> <mask> dog"]
    with TestClient(app) as client:
        r = client.post("/fill-mask", json={"sentences": lines, "topk": 3})
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        wrong = client.post("/translate", json={"sentences": ["a"]})
        assert wrong.status_code == 400 and "/fill-mask instead" in wrong.json()["error"]
        assert client.get("/health").json()["kind"] == "mlm"
    want = decode_cli(checkpoints["mlm"], lines, "--topk", "3")
    for g, w in zip(got, want, strict=True):
        assert g["filled"] == w["filled"] and g["source"] == w["source"]
        assert [[c["id"] for c in m] for m in g["masks"]] == [
            [c["id"] for c in m] for m in w["masks"]
        ]
    assert batcher.queue.qsize() == 0


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_a_cpu_engine_keeps_freed_memory(checkpoints, monkeypatch, device):
    """Engine.load on CPU (a name or a torch.device) raises glibc's thresholds first, as
    `tfcli decode` does: every request's steps reuse their freed tensors."""
    import tfcli.allocator

    calls = []
    monkeypatch.setattr(
        tfcli.allocator, "keep_freed_memory", lambda device: calls.append(1) or True
    )
    Engine.load([checkpoints["seq2seq"]], device)
    assert calls == [1]

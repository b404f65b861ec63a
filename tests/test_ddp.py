"""DDP: a 2-process Gloo run on CPU keeps both replicas identical and shards the data."""
from __future__ import annotations

import json
import socket

import torch
import torch.multiprocessing as mp

from _train_tasks import ddp_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run_keeps_replicas_identical(tmp_path):
    mp.spawn(ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k, v in r0["params"].items():
        torch.testing.assert_close(v, r1["params"][k], rtol=0, atol=0)
    # the ranks drew different shards of the same epoch permutation
    assert set(r0["first_batch"]).isdisjoint(r1["first_batch"])
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 6
    for k, v in ckpt["model"].items():
        torch.testing.assert_close(v, r0["params"][k], rtol=0, atol=0)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 7))
    assert r0["summary"]["world_size"] == 2
    assert r0["summary"]["final_loss"] == r1["summary"]["final_loss"]  # all-reduced

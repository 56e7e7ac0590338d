"""Collectives measured across the GPUs of one node: all-reduce, all-to-all and send/recv.

Runs only when more than one CUDA device is present (one process per device, NCCL); otherwise
the tables have no collective rows and the cost model prices them from the hardware entry's
link figures. Rank 0's median over repeats is recorded, per message size and group size.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from servesim.profiler.timing import Timer

OPERATORS = ("tp_all_reduce", "ep_all_to_all", "pp_send_recv")


def group_sizes() -> list[int]:
    """Powers of two from 2 up to the visible CUDA devices."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [n for n in (2, 4, 8, 16) if n <= count]


def measure_collectives(message_bytes: tuple[int, ...], dtype: torch.dtype) -> pd.DataFrame:
    """Rows (operator, num_bytes, num_devices, time_s) for every group size; empty on one device."""
    frames = []
    for world in group_sizes():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.parquet"
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", "29517")
            mp.spawn(_worker, args=(world, message_bytes, dtype, str(out)), nprocs=world, join=True)
            frames.append(pd.read_parquet(out))
    return pd.concat(frames) if frames else pd.DataFrame(columns=["operator", "num_bytes", "num_devices", "time_s"])


def _worker(rank: int, world: int, message_bytes: tuple[int, ...], dtype: torch.dtype, out: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    device = torch.device("cuda", rank)
    timer = Timer(device, warmup=5, repeats=20)
    rows = []
    for nbytes in message_bytes:
        count = max(world, nbytes // dtype.itemsize // world * world)
        send = torch.randn(count, device=device).to(dtype)
        recv = torch.empty_like(send)
        for operator, call in _collective_calls(send, recv, rank).items():
            dist.barrier()
            seconds = timer.seconds(call)
            rows.append({"operator": operator, "num_bytes": count * dtype.itemsize, "num_devices": world if
                         operator != "pp_send_recv" else 2, "time_s": seconds})
    if rank == 0:
        pd.DataFrame(rows).to_parquet(out)
    dist.barrier()
    dist.destroy_process_group()


def _collective_calls(send: torch.Tensor, recv: torch.Tensor, rank: int) -> dict[str, Callable[[int], object]]:
    """Each collective on these buffers, as the timer calls it (with the copy index, unused)."""
    peer = rank ^ 1
    return {
        "tp_all_reduce": lambda i: dist.all_reduce(send),
        "ep_all_to_all": lambda i: dist.all_to_all_single(recv, send),
        "pp_send_recv": lambda i: _exchange(send, recv, rank, peer),
    }


def _exchange(send: torch.Tensor, recv: torch.Tensor, rank: int, peer: int) -> None:
    """One pipeline hop: even ranks send to the next odd rank, which receives."""
    if rank % 2 == 0:
        dist.send(send, peer)
    else:
        dist.recv(recv, peer)

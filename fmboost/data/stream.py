"""Training pairs as a stream of the safetensors shards of `fmboost prepare`, one shard in memory at a time.

Epoch e orders the shards by a permutation seeded from (seed, e), and rank r of w reads every w-th of them, so the
ranks read disjoint shards; the pairs of each shard are shuffled by (seed, e, shard). The order is a function of
the seed alone, and a rank's position a function of how many pairs it has consumed: a resumed run skips to it
without reading the shards it skips.
"""
from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from fmboost.errors import InputError, MissingError

MANIFEST = "manifest.json"
KEYS = ("x1", "x_cond")  # what training reads; z_lr stays on disk


def seeded(*key: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on `device` seeded by a hash of the key, so that (seed, epoch) and (seed, epoch + 1) are
    unrelated streams."""
    seed = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)


def read_manifest(folder) -> dict:
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise MissingError(f"{folder} has no {MANIFEST}; make it with `fmboost prepare` (or, after a sharded "
                           f"run, `fmboost prepare --merge {folder}`)")
    return json.loads((folder / MANIFEST).read_text())


def shard_sizes(folder, manifest: dict) -> list[tuple[str, int]]:
    """(file, pairs) of every shard, from the safetensors headers: no tensor data is read."""
    sizes = []
    for name in filter(None, manifest["shards"]):
        with safe_open(str(Path(folder) / name), "pt") as f:
            sizes.append((name, f.get_slice("x1").get_shape()[0]))
    if not sizes:
        raise InputError(f"{folder} holds no training pairs")
    return sizes


def epoch_pieces(n_shards: int, seed: int, epoch: int, rank: int, world: int) -> list[tuple[int, int, int]]:
    """Rank's pieces (shard, part, parts) of an epoch: pairs part::parts of a shard; parts > 1 only with fewer
    shards than ranks, so that every rank has something to read."""
    parts = -(-world // n_shards)
    pieces = [(s, p, parts) for s in range(n_shards) for p in range(parts)]
    order = torch.randperm(len(pieces), generator=seeded(seed, 0, epoch)).tolist()
    return [pieces[i] for i in order[rank::world]]


def read_shard(path: str) -> dict[str, torch.Tensor]:
    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in KEYS}


def rank_pieces(folder, sizes, seed: int, rank: int, world: int, start: int, read):
    """This rank's pairs piece by piece, epoch after epoch, from pair `start` on (skipped pieces are not read)."""
    for epoch in itertools.count():
        for shard, part, parts in epoch_pieces(len(sizes), seed, epoch, rank, world):
            name, size = sizes[shard]
            n = len(range(part, size, parts))
            if start >= n:
                start -= n
                continue
            idx = torch.arange(part, size, parts)
            idx = idx[torch.randperm(n, generator=seeded(seed, 0, epoch, shard, part))][start:]
            start = 0
            tensors = read(str(Path(folder) / name))
            yield {k: tensors[k][idx] for k in KEYS}


def rebatch(pieces, size: int):
    """Batches of exactly `size` pairs from pieces of any size (a batch may span shards and epochs)."""
    rest = None
    for piece in pieces:
        cur = piece if rest is None else {k: torch.cat([rest[k], piece[k]]) for k in piece}
        n = len(cur["x1"]) - len(cur["x1"]) % size
        for i in range(0, n, size):
            yield {k: v[i:i + size] for k, v in cur.items()}
        rest = {k: v[n:] for k, v in cur.items()}


def pair_batches(folder, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1, start: int = 0,
                 cache_mb: float = 0):
    """Endless batches for one rank: its stream from pair `start` on. With all shards under `cache_mb`, shards are
    kept in memory once read (small data sets then cost no reading after the first epoch)."""
    sizes = shard_sizes(folder, read_manifest(folder))
    if sum(n for _, n in sizes) < world:
        raise InputError(f"{folder} holds {sum(n for _, n in sizes)} pairs, fewer than the {world} processes")
    small = sum((Path(folder) / name).stat().st_size for name, _ in sizes) <= cache_mb * 2 ** 20
    read = functools.cache(read_shard) if small else read_shard
    return rebatch(rank_pieces(folder, sizes, seed, rank, world, start, read), batch_size)


def first_pairs(folder, n: int) -> dict[str, torch.Tensor]:
    """The first n pairs of the first shard (for sample grids)."""
    name, _ = shard_sizes(folder, read_manifest(folder))[0]
    return {k: v[:n] for k, v in read_shard(str(Path(folder) / name)).items()}

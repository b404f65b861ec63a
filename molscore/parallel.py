"""Conformer generation over several CPU processes (``molscore generate --workers``).

Each worker process holds its own :class:`~molscore.generate.ConformerGenerator` on the CPU
(one torch thread, one ETKDG thread) and generates chunks of consecutive molecules; the
results come back in input order, one chunk at a time, so output can still be streamed. A
molecule's conformers depend only on its input, the options and the seed (every conformer
draw has its own noise generator, :func:`~molscore.generate.draw_generator`), so they are
those of a one-process run up to the float rounding of the network's other batches.

Molecules cross the process boundary as RDKit binary pickles that keep every property
(conformer properties included) and float64 coordinates.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from rdkit import Chem
from tqdm.auto import tqdm

from .generate import ConformerGenerator, GenerateOptions, GenerationResult
from .pool_watch import WorkerDied, init_worker, start_pool, stop, watch

__all__ = ["generate_in_processes", "WorkerDied"]

_PICKLE = Chem.PropertyPickleOptions.AllProps | Chem.PropertyPickleOptions.CoordsAsDouble
_WORKER_ARGS: tuple[str | None, GenerateOptions] | None = None
_WORKER: ConformerGenerator | None = None

# What a worker sends back per molecule: name, input, molecule pickle or None, error, dropped.
_Packed = tuple[str, str, bytes | None, str | None, list[str]]


def _pack_input(item: str | Chem.Mol) -> str | bytes:
    return item.ToBinary(_PICKLE) if isinstance(item, Chem.Mol) else item


def _start_worker(model: str | None, options: GenerateOptions) -> None:
    global _WORKER_ARGS
    init_worker()
    torch.set_num_threads(1)
    _WORKER_ARGS = (model, options)


def _run_chunk(items: list[tuple[str, str | bytes]]) -> list[_Packed]:
    global _WORKER
    if _WORKER is None:       # built here, not in the initializer: its errors reach the caller
        model, options = _WORKER_ARGS
        _WORKER = ConformerGenerator(model, device="cpu", options=options, etkdg_threads=1)
    mols = ((name, Chem.Mol(x) if isinstance(x, bytes) else x) for name, x in items)
    return [(r.name, r.input, None if r.mol is None else r.mol.ToBinary(_PICKLE), r.error, r.dropped)
            for r in _WORKER.run(mols)]


def generate_in_processes(items: Iterable[tuple[str, str | Chem.Mol]], workers: int, *,
                          model: str | Path | None = None, options: GenerateOptions | None = None,
                          chunk: int = 4, progress: bool = False,
                          total: int | None = None) -> Iterator[GenerationResult]:
    """:meth:`ConformerGenerator.run` on ``workers`` spawned CPU processes.

    Args:
        items: ``(name, smiles_or_mol)`` pairs.
        workers: processes (each loads the model once, a few seconds).
        model: checkpoint path, or None for the shipped weights.
        options: generation options (validated here, before any process starts).
        chunk: consecutive molecules per task; results are yielded in input order.
        progress: a progress bar over molecules (``total`` of them when known).

    Yields:
        One :class:`~molscore.generate.GenerationResult` per item, in input order.

    Raises:
        WorkerDied: a worker process died (checked every second while waiting).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    options = options or GenerateOptions()
    options.validate()
    model = None if model is None else str(model)
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"model weights not found: {model}")
    it = iter(items)
    chunks = iter(lambda: [(name, _pack_input(x)) for name, x in itertools.islice(it, chunk)], [])
    pool = start_pool("spawn", workers, _start_worker, (model, options))
    try:
        with tqdm(total=total, unit="mol", disable=not progress) as bar:
            for packed in watch(pool, pool.imap(_run_chunk, chunks),
                                "the records before its chunk are done (generate --resume "
                                "continues)"):
                for i, (name, text, binary, error, dropped) in enumerate(packed, 1):
                    bar.update(1)
                    yield GenerationResult(name=name, input=text,
                                           mol=None if binary is None else Chem.Mol(binary),
                                           error=error, dropped=dropped,
                                           batch_end=i == len(packed))   # of its chunk
        pool.close()           # a clean shutdown
        pool.join()
    finally:
        stop(pool)             # an error, a dead worker or an early stop: the rest at once

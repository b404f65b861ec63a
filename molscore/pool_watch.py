"""Waiting on a :class:`multiprocessing.pool.Pool` without hanging when a worker dies.

``Pool`` replaces a worker process that dies (killed, out of memory, a crash in native code)
without a word and waits for its task without end. :func:`start_pool` starts a pool whose
workers ignore Ctrl-C from their first instruction, :func:`watch` yields ``pool.imap``'s
results and checks the workers while it waits; :func:`stop` ends a pool at once; every worker
runs :func:`init_worker` first.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing.pool import IMapIterator, Pool
from typing import TypeVar

from tqdm import tqdm

__all__ = ["WorkerDied", "init_worker", "start_pool", "watch", "stop"]

T = TypeVar("T")
POLL_S = 1.0          # seconds between checks that every worker process is still alive


class WorkerDied(RuntimeError):
    """A worker process of a pool exited while the run needed it."""


def init_worker() -> None:
    """Set-up of a pool worker process (call it from the pool's ``initializer``).

    Ctrl-C reaches every process of the terminal's process group: a worker ignores it, so
    that the parent alone handles it (ending the pool with :func:`stop`) and no worker prints
    a traceback. SIGTERM ends a worker (its default, as ``Pool.terminate`` expects): a forked
    worker inherits the parent's handler, which :func:`start_pool` holds SIGTERM back with.
    tqdm's lock becomes a thread lock: its default also creates a
    multiprocessing semaphore, which a killed worker leaves registered with the resource
    tracker ("leaked semaphore objects" at exit).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    tqdm.set_lock(threading.RLock())


def start_pool(method: str, workers: int, initializer: Callable, initargs: tuple = ()) -> Pool:
    """``multiprocessing.get_context(method).Pool(workers, initializer, initargs)``, its worker
    processes started while this (main) thread ignores SIGINT, so that they inherit the
    ignored disposition (across ``exec`` too: Python then keeps it): a spawned worker spends
    a second or more importing before :func:`init_worker` runs, and a Ctrl-C then printed its
    ``KeyboardInterrupt`` traceback.

    A SIGTERM handled in Python (``molscore`` and the bench scripts raise it as
    :class:`~molscore.errors.Terminated`, a BaseException) is held back while the pool
    starts: raised inside ``Pool.__init__``, which ends its workers on an Exception only, it
    left them running with no pool for the caller to stop. It is raised here once the pool
    is up, and the pool stopped (:func:`stop`), as for a signal that arrives before this
    returns. The caller's handlers are back when this returns."""
    context = mp.get_context(method)
    if threading.current_thread() is not threading.main_thread():   # signal.signal would raise
        return context.Pool(workers, initializer=initializer, initargs=initargs)
    held: list[int] = []
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    if callable(signal.getsignal(signal.SIGTERM)):
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda signum, frame: held.append(signum))
    pool = None
    try:
        try:
            pool = context.Pool(workers, initializer=initializer, initargs=initargs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])        # its handler raises here
    except BaseException:
        if pool is not None:
            stop(pool)
        raise
    return pool


def watch(pool: Pool, results: IMapIterator, kept: str) -> Iterator[T]:
    """The items of ``results`` (``pool.imap(...)``), in order.

    Args:
        pool: the pool running ``results``.
        results: its ``imap`` iterator, of chunksize 1 (with a larger chunksize ``imap``
            returns a plain generator, which cannot be waited on with a timeout).
        kept: what the caller keeps when a worker dies, ending the error message.

    Raises:
        TypeError: ``results`` is not ``imap``'s iterator with a chunk size of 1 (with a larger
            one ``imap`` returns a plain generator, which cannot wait with a timeout: make the
            chunks yourself, as :mod:`molscore.parallel` does).
        WorkerDied: a worker process died, or was replaced, while waiting (checked every
            :data:`POLL_S` seconds). Reads ``Pool._pool``, its list of worker processes:
            private, but there since Python 2.6, and the only way to see a replaced worker.
    """
    if not isinstance(results, IMapIterator):
        raise TypeError(f"watch needs pool.imap's iterator (chunksize 1), got {type(results).__name__}")
    workers = {proc.pid: proc for proc in pool._pool}
    while True:
        try:
            yield results.next(timeout=POLL_S)
        except StopIteration:
            return
        except mp.TimeoutError:
            dead = [proc for proc in workers.values() if proc.exitcode is not None]
            if dead or {proc.pid for proc in pool._pool} != set(workers):
                code = dead[0].exitcode if dead else None
                raise WorkerDied(f"a worker process died (exit code {code}: killed, out of "
                                 f"memory or crashed); {kept}") from None


def stop(pool: Pool, wait_s: float = 5.0) -> None:
    """End ``pool`` at once: kill its workers, then ``pool.terminate()`` in a daemon thread,
    waited for at most ``wait_s`` seconds. A worker killed while it held one of the pool's
    queue locks (putting a result, taking a task) leaves that lock taken for ever, and
    ``terminate`` (also ``with Pool`` on an error) would wait for it without end."""
    for proc in pool._pool:
        proc.kill()
    thread = threading.Thread(target=pool.terminate, daemon=True)
    thread.start()
    thread.join(wait_s)

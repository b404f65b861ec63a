"""Waiting on a :class:`multiprocessing.pool.Pool` without hanging when a worker dies.

``Pool`` replaces a worker process that dies (killed, out of memory, a crash in native code)
without a word and waits for its task without end. :func:`start_pool` starts a pool whose
workers leave Ctrl-C to the parent from their first instruction, :func:`watch` yields
``pool.imap``'s results and checks the workers while it waits; :func:`stop` ends a pool at
once; every worker runs :func:`init_worker` first, which also ends the worker when its
parent process dies (killed with SIGKILL or by the out-of-memory killer, whose workers lived
on otherwise, at a task or waiting for the next one).
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from multiprocessing.pool import TERMINATE, IMapIterator, Pool
from typing import TypeVar

from tqdm import tqdm

__all__ = ["WorkerDied", "init_worker", "start_pool", "watch", "stop"]

T = TypeVar("T")
POLL_S = 1.0          # seconds between checks that the workers (in a worker: its parent) are alive
ORPHAN_EXIT = 1       # exit status of a worker that ends because its parent process died
PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal a process gets when its parent thread ends


class WorkerDied(RuntimeError):
    """A worker process of a pool exited while the run needed it."""


def init_worker() -> None:
    """Set-up of a pool worker process (call it from the pool's ``initializer``).

    Ctrl-C reaches every process of the terminal's process group: a worker ignores it, so
    that the parent alone handles it (ending the pool with :func:`stop`) and no worker prints
    a traceback. A worker of :func:`start_pool` starts with SIGINT blocked: a Ctrl-C before
    this point waits, and is dropped here, where SIGINT is ignored before it is unblocked.
    SIGTERM ends a worker (its default, as ``Pool.terminate`` expects): a forked worker
    inherits the parent's handler, which :func:`start_pool` holds SIGTERM back with.
    tqdm's lock becomes a thread lock: its default also creates a
    multiprocessing semaphore, which a killed worker leaves registered with the resource
    tracker ("leaked semaphore objects" at exit).

    On Linux the kernel then kills the worker (SIGKILL, ``PR_SET_PDEATHSIG``) when the thread
    that started it ends: the caller's thread for the pool's first workers (which must not
    end while the pool is in use), the pool's worker-handler thread for replacements. A
    parent killed with SIGKILL (``kill -9``, the out-of-memory killer) so ends its workers at
    once, also one in a task that holds the GIL (RDKit), which the thread below cannot stop
    until the task returns: under ``generate --workers`` one ran on 2 s and printed two
    ``BrokenPipeError`` tracebacks sending its result.

    A daemon thread then ends the worker (``os._exit(ORPHAN_EXIT)``: no traceback, no
    clean-up) once its parent process is gone, checking at once and then every
    :data:`POLL_S` seconds that ``os.getppid()`` still is the process that started it
    (``multiprocessing.parent_process()``; in a process multiprocessing did not start, the
    parent it has now): an orphan gets another parent (init, or a subreaper). A parent killed
    with SIGKILL (``kill -9``, the out-of-memory killer) runs no clean-up, and its workers ran
    their task to its end, then printed a ``BrokenPipeError`` traceback or waited for the next
    task for ever; a parent that died before this point (a spawned worker imports first) ends
    the worker here. For the ``fork`` and ``spawn`` methods, whose workers are children of
    the process that started them (``forkserver``'s are not; :func:`start_pool` does not use
    it). A task in native code that holds the GIL delays the check until it returns; it is
    what ends a worker where the kernel's signal is not set (not Linux), or whose parent
    died before this point.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    tqdm.set_lock(threading.RLock())
    _die_with_parent_thread()
    parent = mp.parent_process()
    threading.Thread(target=_exit_with_parent, args=(parent.pid if parent else os.getppid(),),
                     name="pool_watch-parent", daemon=True).start()


def _die_with_parent_thread() -> None:
    """Linux: have the kernel send this process SIGKILL when the thread that started it ends
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere, or where libc has no ``prctl``, nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _exit_with_parent(parent: int) -> None:
    """End this process once its parent is no longer the process ``parent`` (its pid)."""
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(ORPHAN_EXIT)


def start_pool(method: str, workers: int, initializer: Callable, initargs: tuple = ()) -> Pool:
    """``multiprocessing.get_context(method).Pool(workers, initializer, initargs)`` (method
    ``"fork"`` or ``"spawn"``), its worker processes started while this thread blocks SIGINT.

    A worker inherits the blocked SIGINT (across ``exec`` too) until :func:`init_worker`
    ignores and unblocks it: a spawned worker spends a second or more importing first, and
    a Ctrl-C then printed its ``KeyboardInterrupt`` traceback. So do the workers that the
    pool's worker-handler thread starts later, in place of one that exited: it is started
    meanwhile, and keeps the mask. (Ignoring SIGINT here instead lost a Ctrl-C pressed
    meanwhile.)

    Called from the main thread, a SIGINT or SIGTERM handled in Python (Ctrl-C's
    ``KeyboardInterrupt``; ``molscore`` and the bench scripts raise SIGTERM as
    :class:`~molscore.errors.Terminated`, a BaseException) is held back while the pool
    starts, by a handler that notes it (another thread of the process, which does not block
    SIGINT, can take a Ctrl-C meanwhile; Python runs the handler in the main thread):
    raised inside ``Pool.__init__``, which ends its workers on an Exception only, it left
    them running with no pool for the caller to stop. Once the pool is up the first signal
    held is raised here, and the pool stopped (:func:`stop`), as for a signal that arrives
    after this returns. The caller's handlers and signal mask are back when this returns.
    Called from another thread, which Python runs no signal handler in, it leaves Ctrl-C to
    the main thread."""
    context = mp.get_context(method)
    if method != "fork":    # started inside Pool(), the resource tracker unblocked SIGINT here
        resource_tracker.ensure_running()
    held: list[int] = []
    previous: dict[int, Callable] = {}
    if threading.current_thread() is threading.main_thread():   # signal.signal would raise
        previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum))
                    for signum in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(signum))}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pool = None
    try:
        try:
            pool = context.Pool(workers, initializer=initializer, initargs=initargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)    # a Ctrl-C meanwhile: held now
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
    ``terminate`` (also ``with Pool`` on an error) would wait for it without end. The pool's
    worker handler is told to stop first: it replaced the killed workers with new ones until
    ``terminate`` stopped it, and under load ``terminate`` then outlasted ``wait_s``, leaving
    a replacement running."""
    pool._worker_handler._state = TERMINATE      # no replacements for the killed workers
    for proc in pool._pool:
        proc.kill()
    thread = threading.Thread(target=pool.terminate, daemon=True)
    thread.start()
    thread.join(wait_s)

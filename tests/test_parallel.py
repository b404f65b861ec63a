"""Conformer generation over several processes gives the one-process results, in order."""
import os
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from molscore.generate import ConformerGenerator, GenerateOptions
from molscore.parallel import generate_in_processes
from _processes import children, run_alone, stop_midway
from test_generate import STEREO_SMILES, make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _conformer_props(mol: Chem.Mol) -> list[dict]:
    props = [c.GetPropsAsDict() for c in mol.GetConformers()]
    assert all({"conformer", "checks"} <= set(p) for p in props)
    return props


def test_two_processes_give_the_one_process_results_in_input_order(tiny_model):
    """Chunks of one molecule, so every molecule is sampled in a batch of its own in the
    workers and next to the others in one process: the same conformers, properties, errors
    and dropped reasons, for SMILES and ``Mol`` inputs alike."""
    mol_input = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccccc1"))
    items = [("a", "CCO"), ("bad", "C1CC"), ("x", STEREO_SMILES), ("m", mol_input),
             ("metal", "C[Fe]"), ("c", "c1ccccc1O")]
    # no clean-up: its MMFF94 minimisation of the random-weight model's conformers turns
    # float rounding into differences of up to 0.01 Å, in one process as well
    options = GenerateOptions(n=3, steps=3, seed=2, max_retries=2, cleanup=False)
    alone = list(ConformerGenerator(tiny_model, device="cpu", options=options).run(items))
    spread = list(generate_in_processes(items, 2, model=tiny_model, options=options, chunk=1))
    assert [r.name for r in spread] == [name for name, _ in items]
    for one, many in zip(alone, spread):
        assert (many.input, many.ok, many.error, many.dropped) == (one.input, one.ok, one.error,
                                                                   one.dropped)
        if one.ok:
            assert many.mol.GetPropsAsDict() == one.mol.GetPropsAsDict()
            assert _conformer_props(many.mol) == _conformer_props(one.mol)
            a = np.stack([c.GetPositions() for c in one.mol.GetConformers()])
            b = np.stack([c.GetPositions() for c in many.mol.GetConformers()])
            assert np.abs(a - b).max() < 1e-4
    assert "invalid SMILES" in spread[1].error and "Fe" in spread[4].error
    assert spread[3].mol.GetNumAtoms() == mol_input.GetNumAtoms()


def test_bad_arguments_fail_before_any_process_starts(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        next(generate_in_processes([("a", "CCO")], 0, model=tiny_model))
    with pytest.raises(FileNotFoundError, match="model weights not found"):
        next(generate_in_processes([("a", "CCO")], 2, model=tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="n must be >= 1"):
        next(generate_in_processes([("a", "CCO")], 2, model=tiny_model,
                                   options=GenerateOptions(n=0)))


def test_a_worker_that_cannot_load_the_model_raises_in_the_caller(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint .*broken.pt"):
        list(generate_in_processes([("a", "CCO")], 1, model=broken))


def test_a_worker_that_dies_raises_in_the_caller_instead_of_hanging(tiny_model):
    """A worker killed mid-run (out of memory, a crash in native code): multiprocessing's
    Pool replaces it and waits for its chunk without end; the caller gets an error."""
    import multiprocessing as mp
    import os
    import signal

    def hung(*_):
        raise TimeoutError("generate_in_processes hung after a worker died")

    # both workers killed while computing (an ETKDG pool of 200 each), so a chunk is lost;
    # one killed while it held a queue lock would hang Pool.terminate (pool_watch.stop)
    items = [(f"m{i}", "CC(=O)Nc1ccc(O)cc1") for i in range(40)]
    options = GenerateOptions(n=30, steps=3, seed=1, max_retries=0, cleanup=False)
    results = generate_in_processes(items, 2, model=tiny_model, options=options, chunk=1)
    assert next(results).name == "m0"    # the workers are up (slow on a loaded machine)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        for worker in mp.active_children():    # both: a chunk is surely lost
            os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="a worker process died"):
            list(results)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_ends_a_multi_process_run_quietly_keeping_the_records_written(tiny_model, tmp_path, how):
    """Ctrl-C reaches the whole process group, SIGTERM (a job scheduler, ``kill``) the main
    process only: the run reports one line and exits 130 / 143, with the records written so
    far whole and no worker process left running; no worker prints a traceback, and no
    semaphore is left registered with multiprocessing's resource tracker (tqdm's lock in a
    killed worker)."""
    import sys

    (tmp_path / "in.smi").write_text("".join(f"CC(=O)Nc1ccc(O)cc1 m{i}\n" for i in range(400)))
    out = tmp_path / "out.sdf"
    cmd = [sys.executable, "-m", "molscore", "generate", "--input", "in.smi", "-n", "2",
           "--steps", "2", "--pool", "1", "--workers", "2", "--model", str(tiny_model),
           "--no-progress", "-o", str(out)]
    code, stderr, workers, left = stop_midway(
        cmd, how, tmp_path, lambda seen: out.exists() and out.read_text().count("$$$$") >= 4)
    assert len(workers) >= 2                          # the two workers (and the resource tracker)
    assert (code, stderr.strip()) == ((130, "molscore: interrupted") if how == "ctrl-c"
                                      else (143, "molscore: terminated")), stderr
    assert left == []
    kept = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert len(kept) >= 4 and all(m is not None for m in kept)
    assert all(m.GetProp("_Name").startswith("m") for m in kept)


def test_watch_refuses_the_generator_imap_returns_for_larger_chunks():
    """``pool.imap`` with a chunk size above 1 returns a plain generator, on which the watch
    failed with an AttributeError traceback (``build-dataset --workers`` on over 8 x workers
    molecules): a TypeError saying what to pass instead; chunk size 1 is watched."""
    import multiprocessing as mp

    from molscore.pool_watch import stop, watch

    pool = mp.get_context("fork").Pool(1)
    try:
        assert list(watch(pool, pool.imap(abs, [-1, -2, 3]), "nothing")) == [1, 2, 3]
        with pytest.raises(TypeError, match=r"watch needs pool.imap's iterator \(chunksize 1\), got generator"):
            list(watch(pool, pool.imap(abs, [-1, -2, 3], chunksize=2), "nothing"))
    finally:
        stop(pool)


def _sigint_blocked(pid: int) -> bool:
    """Whether process ``pid`` blocks SIGINT (the kernel's SigBlk mask; Linux ``/proc``)."""
    import signal

    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    mask, = [int(line.split()[1], 16) for line in status if line.startswith("SigBlk:")]
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_pool_workers_take_no_ctrl_c_from_their_start():
    """A spawned worker imports for a second or more before its initializer makes it ignore
    SIGINT; a Ctrl-C then printed its KeyboardInterrupt traceback (a flaky CI failure of the
    test above, on a busy machine). start_pool's workers have SIGINT blocked from their first
    instruction (the kernel's SigBlk mask, read before they can have run any Python), and
    the caller's handler and signal mask are back."""
    import signal

    from molscore.pool_watch import start_pool, stop

    before = signal.getsignal(signal.SIGINT)
    pool = start_pool("spawn", 2, int)
    try:
        assert len(pool._pool) == 2 and all(_sigint_blocked(proc.pid) for proc in pool._pool)
        assert signal.getsignal(signal.SIGINT) is before
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        stop(pool)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_while_the_pool_starts_leaves_no_worker_running(monkeypatch):
    """SIGTERM is raised as ``Terminated`` (a BaseException: ``molscore`` and the bench
    scripts' ``run_script``); arriving inside ``Pool.__init__``, which ends its workers on an
    Exception only, it left no pool to stop, and once the pool's worker-handler thread ran
    (before the pool's finalizer exists) that thread kept the workers running until the
    interpreter exited. Sent here just after that thread starts: ``start_pool`` raises it
    once the pool is up, having stopped the pool, and the caller's handler is back."""
    import multiprocessing.pool
    import signal
    import threading
    import time

    from molscore.cli import _terminate
    from molscore.errors import Terminated
    from molscore.pool_watch import start_pool

    handlers: list[tuple[threading.Thread, tuple]] = []
    start = threading.Thread.start

    def start_then_sigterm(thread):
        start(thread)
        if thread._target == multiprocessing.pool.Pool._handle_workers:
            handlers.append((thread, thread._args))
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(threading.Thread, "start", start_then_sigterm)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with pytest.raises(Terminated):
            start_pool("fork", 3, int)
        assert signal.getsignal(signal.SIGTERM) is _terminate
        time.sleep(0.5)
        (_, args), = handlers
        workers = args[5]                             # the pool's list of worker processes
        assert len(workers) == 3 and not {w.pid for w in workers} & set(children(os.getpid()))
    finally:
        signal.signal(signal.SIGTERM, previous)
        for handler, args in handlers:    # a failure: stop the thread that replaces killed workers
            handler._state = multiprocessing.pool.TERMINATE
            args[-1].put(None)
            handler.join(5)
            for worker in args[5]:
                worker.kill()


# Started in a session of its own; its pool's workers each send Ctrl-C to that process group
# (themselves, their sibling and the parent, which waits inside Pool.__init__ for them) before
# init_worker; with "thread", a thread of the parent's that runs meanwhile takes the signal.
_CTRL_C_WHILE_STARTING = '''
import multiprocessing as mp
import multiprocessing.pool
import os
import signal
import sys
import threading
import time
from pathlib import Path

from molscore.pool_watch import init_worker, start_pool


def ctrl_c_then_init(folder):
    os.killpg(0, signal.SIGINT)
    init_worker()
    Path(folder, str(os.getpid())).touch()


if __name__ == "__main__":
    method, folder, busy = sys.argv[1], sys.argv[2], sys.argv[3] == "thread"
    start = threading.Thread.start

    def start_then_wait(thread):    # until both workers are set up, or one died
        start(thread)
        if thread._target == multiprocessing.pool.Pool._handle_workers:
            workers = list(thread._args[5])
            while len(os.listdir(folder)) < 2 and all(w.exitcode is None for w in workers):
                time.sleep(0.05)

    threading.Thread.start = start_then_wait
    if busy:
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    try:
        pool = start_pool(method, 2, ctrl_c_then_init, (folder,))
    except KeyboardInterrupt:
        print(f"interrupted, {len(mp.active_children())} workers running")
        sys.exit(130)
    pool.close()
    pool.join()
    print("not interrupted")
'''


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("method, busy", [("spawn", "alone"), ("fork", "alone"), ("fork", "thread")])
def test_ctrl_c_while_the_pool_starts_interrupts_the_caller(tmp_path, method, busy):
    """start_pool ignored SIGINT while the pool's workers started (so that they inherit an
    ignored Ctrl-C): a Ctrl-C then, a second or more with spawn, was lost. It reaches the
    caller as ``KeyboardInterrupt`` once the pool is up, the pool stopped; the workers, which
    take it before their initializer, print no traceback. Under "thread" another thread of
    the parent's takes the signal (the main thread blocks it meanwhile)."""
    import sys

    script, folder = tmp_path / "ctrl_c.py", tmp_path / "started"
    script.write_text(_CTRL_C_WHILE_STARTING)
    folder.mkdir()
    code, out, err, left = run_alone([sys.executable, str(script), method, str(folder), busy], tmp_path)
    assert (code, out, err) == (130, "interrupted, 0 workers running\n", "")
    assert len(os.listdir(folder)) == 2 and left == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_while_generate_starts_its_workers_exits_130(tiny_model, tmp_path):
    """``generate --workers`` run to its end when a Ctrl-C came while its pool started; now
    it exits as for a later one: one line, status 130, no worker left running. The Ctrl-C is
    sent once the pool's workers are started (spawned: still importing, or set up)."""
    import sys

    script = tmp_path / "generate.py"
    script.write_text('''
import multiprocessing.pool
import os
import signal
import sys
import threading

from molscore.cli import main

if __name__ == "__main__":
    start = threading.Thread.start

    def start_then_ctrl_c(thread):
        target = thread._target     # read first: a thread that has run deletes it
        start(thread)
        if target == multiprocessing.pool.Pool._handle_workers:
            os.killpg(0, signal.SIGINT)

    threading.Thread.start = start_then_ctrl_c
    sys.exit(main(sys.argv[1:]))
''')
    (tmp_path / "in.smi").write_text("".join(f"CCO m{i}\n" for i in range(4)))
    code, out, err, left = run_alone(
        [sys.executable, str(script), "generate", "--input", "in.smi", "-n", "1", "--steps", "2",
         "--workers", "2", "--model", str(tiny_model), "--no-progress", "-o", "out.sdf"], tmp_path)
    assert (code, err, left) == (130, "molscore: interrupted\n", [])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_replacement_worker_takes_no_ctrl_c_before_its_initializer(method):
    """Pool's worker-handler thread replaces a worker that exits (here a task's
    ``os._exit``; also ``maxtasksperchild``); such a worker took the parent's Ctrl-C handler
    (spawn: Python's, reinstalled after ``exec``) until its initializer ran. Started by that
    thread, which start_pool starts with SIGINT blocked, it has SIGINT blocked from its first
    instruction (here for good: ``int`` is no ``init_worker``)."""
    import time

    from molscore.pool_watch import start_pool

    pool = start_pool(method, 2, int)
    try:
        first = {proc.pid for proc in pool._pool}
        pool.apply_async(os._exit, (0,))
        deadline = time.monotonic() + 120
        while not (workers := {proc.pid for proc in pool._pool}) - first:
            assert time.monotonic() < deadline, "no worker replaced the one that exited"
            time.sleep(0.05)
        assert len(workers) == 2 and all(_sigint_blocked(pid) for pid in workers)
        assert not _sigint_blocked(os.getpid())
    finally:
        pool.terminate()


def test_stop_leaves_no_replacement_worker_running():
    """stop killed the workers and then terminated the pool: meanwhile the pool's worker
    handler replaced the killed workers, and terminate, stuck on the queue lock a killed
    worker held, never ended the replacements. Here terminate starts a second late, as it
    did under load; no new worker may be running after stop."""
    import multiprocessing as mp
    import time

    from molscore.pool_watch import init_worker, start_pool, stop

    pool = start_pool("fork", 2, init_worker)
    started = {p.pid for p in pool._pool}
    terminate = pool.terminate

    def late_terminate():
        time.sleep(1.0)
        terminate()

    pool.terminate = late_terminate
    stop(pool, wait_s=2.0)
    assert [p.pid for p in mp.active_children() if p.pid not in started] == []


# Started in a session of its own: a pool whose workers each make a file named by their pid in
# pids/ (printed to one shared stdout, two pids once ran together) and then sleep
# in their task (a minute; holding the GIL or not) or, once the tasks are done, wait for the
# next one; the parent
# prints "started" once both have, and sleeps.
_KILLED_PARENT = '''
import ctypes
import multiprocessing as mp
import os
import sys
import time

from molscore.pool_watch import init_worker, start_pool


def nap(barrier, seconds, hold_gil):
    open(os.path.join("pids", str(os.getpid())), "w").close()   # one file each: no shared writes
    barrier.wait()
    if hold_gil:                # as a long RDKit call: PyDLL calls keep the GIL
        ctypes.PyDLL(None).sleep(int(seconds))
    else:
        time.sleep(seconds)


if __name__ == "__main__":
    method, seconds, hold_gil = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "gil"
    pool = start_pool(method, 2, init_worker)
    barrier = mp.get_context(method).Manager().Barrier(3)
    pool.starmap_async(nap, [(barrier, seconds, hold_gil)] * 2, chunksize=1)
    barrier.wait()
    print("started", flush=True)
    time.sleep(600)
'''


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("method", ["spawn", "fork"])
@pytest.mark.parametrize("task_s, task", [(60.0, "sleep"), (60.0, "gil"), (0.0, "sleep")])
def test_workers_end_quietly_when_their_parent_is_killed(tmp_path, method, task_s, task):
    """A parent killed with SIGKILL (``kill -9``, the out-of-memory killer) stops no worker:
    they ran on in their task (here a minute), then a spawned one printed a BrokenPipeError
    traceback sending its result and a forked one waited for the next task for ever, as it
    did with no task left (``task_s`` 0; a spawned one ended then, its task queue at EOF).
    init_worker ends each within about ``POLL_S`` of its parent's death (allowed here:
    15 s), printing nothing, also in a task that holds the GIL (``task`` gil, as RDKit's
    calls do), which its watching thread alone waited for to the end (the kernel's
    parent-death signal does not)."""
    import signal
    import subprocess
    import sys
    import time

    from _processes import alive

    script, out, err = tmp_path / "killed.py", tmp_path / "out.txt", tmp_path / "err.txt"
    script.write_text(_KILLED_PARENT)
    (tmp_path / "pids").mkdir()
    with open(out, "w") as stdout, open(err, "w") as stderr:   # files: a worker could hold a pipe
        run = subprocess.Popen([sys.executable, str(script), method, str(task_s), task], cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                               stdout=stdout, stderr=stderr, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while "started" not in out.read_text():
            assert run.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        workers = [int(path.name) for path in (tmp_path / "pids").iterdir()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        run.kill()
        run.wait()
        deadline = time.monotonic() + 15
        while (left := [pid for pid in workers if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == []
        assert err.read_text() == ""
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)   # the Manager's server process, a failure's workers
        except ProcessLookupError:
            pass

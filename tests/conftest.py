"""Test-wide settings.

The graph networks in these tests are small: with more than one intra-op thread,
thread synchronisation costs more than the work (100x slower steps were measured on a
loaded 2-core machine), so the suite runs torch single-threaded.

The tests of what Ctrl-C does (in this process and in the commands and scripts they start)
need SIGINT to arrive. A shell without job control starts a background job (``.ci/run &``)
with SIGINT ignored, which every process it starts inherits: Python then installs no
KeyboardInterrupt handler, and those tests failed. The suite restores Python's handler, which
the processes it starts see as the default (an exec resets a handled signal, not an ignored one).
"""
import signal

import torch

torch.set_num_threads(1)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

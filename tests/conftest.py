"""Test-wide settings.

The graph networks in these tests are small: with more than one intra-op thread,
thread synchronisation costs more than the work (100x slower steps were measured on a
loaded 2-core machine), so the suite runs torch single-threaded.
"""
import torch

torch.set_num_threads(1)

"""The README's parity-of-bit-strings claim at reduced size: the sLSTM learns parity on lengths
3-40 and extrapolates to 40-256; the mLSTM (no memory mixing) stays at chance. CI runs the full
example (`.ci/check_claims.py`)."""
import importlib.util
import os

import pytest


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind,low,high", [("slstm", 0.99, 1.0), ("mlstm", 0.4, 0.6)])
def test_parity_bits_slstm_solves_it_and_mlstm_cannot(kind, low, high):
    parity = _example("parity_bits")
    accuracy, _ = parity.train(kind, steps=300, seed=0, hidden=32, heads=1, log=False)
    assert low <= accuracy <= high, accuracy

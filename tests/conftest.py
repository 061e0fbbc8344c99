"""Fixtures shared by the tests of the native kernels."""
import pytest

from pyrnn import _core


@pytest.fixture(params=_core.available_isas())
def isa(request):
    """Runs the test once per instruction set this machine has; restores the active one."""
    saved = _core.active_isa()
    _core.select_isa(request.param)
    yield request.param
    _core.select_isa(saved)


@pytest.fixture
def restore_native_settings():
    """Restores the instruction set and thread count a test changes."""
    isa, threads = _core.active_isa(), _core.get_num_threads()
    yield
    _core.select_isa(isa)
    _core.set_num_threads(threads)

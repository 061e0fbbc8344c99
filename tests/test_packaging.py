"""What packaging promises: the compiled module's type stub names every function, class and
parameter the module has (so type checkers see the real signatures), and the package is
marked typed. CI also builds the sdist and wheel and type-checks tests/typecheck/usage.py."""
import importlib.util
import os

import pyrnn
from pyrnn import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _core_stub_tool():
    spec = importlib.util.spec_from_file_location("core_stub", os.path.join(ROOT, ".ci", "core_stub.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_core_stub_matches_the_compiled_module():
    tool = _core_stub_tool()
    with open(os.path.join(os.path.dirname(pyrnn.__file__), "_core.pyi")) as f:
        stub = tool.outline(f.read())
    assert stub == tool.outline(tool.generate(_core)), "run python .ci/core_stub.py --write"


def test_package_is_marked_typed():
    assert os.path.exists(os.path.join(os.path.dirname(pyrnn.__file__), "py.typed"))

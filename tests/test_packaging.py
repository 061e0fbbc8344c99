"""What packaging promises: the compiled module's type stub names every function, class and
parameter the module has (so type checkers see the real signatures), the package is marked
typed, and it refuses a compiled module of another version. CI also builds the sdist and wheel
and type-checks tests/typecheck/usage.py."""
import importlib.util
import os
import subprocess
import sys

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


def test_compiled_module_carries_the_package_version():
    from pyrnn._version import __version__

    assert _core.__version__ == __version__ == pyrnn.__version__


def test_extension_of_another_version_is_refused(tmp_path):
    # The real compiled module, loaded first with its version changed: importing pyrnn must
    # then stop with a clear error instead of running Python files against a foreign build.
    child = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pyrnn._core', {_core.__file__!r})\n"
        "core = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(core)\n"
        "core.__version__ = '0.0.1'\n"
        "sys.modules['pyrnn._core'] = core\n"
        "try:\n"
        "    import pyrnn\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    print('imported')\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyrnn.__file__)))
    out = subprocess.run([sys.executable, "-c", child], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    message = out.stdout.strip()
    assert message.startswith(f"pyrnn {pyrnn.__version__}'s compiled extension is version 0.0.1"), message
    assert "reinstall pyrnn (pip install --force-reinstall" in message

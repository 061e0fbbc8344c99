"""Writes or checks pyrnn/_core.pyi, the type stub of the compiled module, from the signatures
pybind11 puts in its docstrings (so the stub cannot drift from the bindings unnoticed).

    python .ci/core_stub.py           # print the stub
    python .ci/core_stub.py --write   # write pyrnn/_core.pyi
    python .ci/core_stub.py --check   # exit 1 if pyrnn/_core.pyi lacks or misnames anything

The check compares names and parameter names, not the spelling of types, which differs
between pybind11 versions.
"""
from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = os.path.join(ROOT, "pyrnn", "_core.pyi")
HEADER = '''"""Type stub of pyrnn._core, the compiled module (written by .ci/core_stub.py from the
bindings' signatures; regenerate it after changing them)."""
import typing

import numpy
import numpy.typing
'''


def _signature(doc: str, name: str) -> tuple[str, str]:
    """``(parameters -> return, rest of the docstring)`` from a pybind11 docstring, whose first
    line is ``name(parameters) -> return`` (a property's getter leaves the name out)."""
    first, _, rest = (doc or "").partition("\n")
    m = re.fullmatch(rf"(?:{re.escape(name)})?\((.*)\)\s*->\s*(.+)", first.strip())
    if not m:
        raise ValueError(f"{name}: no pybind11 signature in its docstring: {first!r}")
    params, returns = m.groups()
    params = re.sub(r"=\s*(None|True|False|-?[0-9.e+-]+|'[^']*'|\"[^\"]*\")", "= ...", params)
    return f"({params}) -> {returns}".replace("pyrnn._core.", ""), rest.strip()


def _docstring(text: str, indent: str) -> str:
    if not text:
        return ""
    body = textwrap.fill(text, 96 - len(indent), initial_indent="", subsequent_indent=indent)
    return f'\n{indent}"""{body}"""'


def generate(module) -> str:
    out = [HEADER]
    if isinstance(getattr(module, "__version__", None), str):
        out.append("\n__version__: str\n")
    for name in sorted(n for n in dir(module) if not n.startswith("__")):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            base = obj.__bases__[0].__name__
            out.append(f"\nclass {name}({base}):{_docstring(obj.__doc__ or '', '    ') or ' ...'}\n")
        elif inspect.isclass(obj):
            lines = [f"\nclass {name}:{_docstring(obj.__doc__ or '', '    ')}"]
            for attr in sorted(a for a in vars(obj) if not a.startswith("_")):
                prop = vars(obj)[attr]
                if isinstance(prop, property):
                    sig, _ = _signature(prop.fget.__doc__, attr)
                    returns = sig.rsplit("->", 1)[1].strip()
                    lines.append(f"    @property\n    def {attr}(self) -> {returns}: ...")
            if len(lines) == 1 and not obj.__doc__:
                lines[0] += " ..."
            out.append("\n".join(lines) + "\n")
        elif callable(obj):
            sig, doc = _signature(obj.__doc__, name)
            body = _docstring(doc, "    ")
            out.append(f"\ndef {name}{sig}:{body or ' ...'}\n" if not body else f"\ndef {name}{sig}:{body}\n")
    return "".join(out)


def outline(stub: str) -> dict[str, list[str]]:
    """Every function, class and property of a stub with its parameter names."""
    names: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(stub)):
        if isinstance(node, ast.ClassDef):
            names[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names[f"{node.name}.{item.name}"] = [a.arg for a in item.args.args]
        elif isinstance(node, ast.FunctionDef) and node.col_offset == 0:
            names[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.col_offset == 0:
            names[node.target.id] = []
    return names


def main(argv: list[str]) -> int:
    from pyrnn import _core       # the importable one: installed, or this tree via PYTHONPATH

    text = generate(_core)
    if "--write" in argv:
        with open(STUB, "w") as f:
            f.write(text)
        return 0
    if "--check" in argv:
        current = outline(open(STUB).read()) if os.path.exists(STUB) else {}
        expected = outline(text)
        if current != expected:
            differ = sorted(k for k in current.keys() | expected.keys() if current.get(k) != expected.get(k))
            print(f"{STUB} is out of date ({', '.join(differ)}): run python .ci/core_stub.py --write",
                  file=sys.stderr)
            return 1
        print(f"{os.path.relpath(STUB, ROOT)} matches the compiled module ({len(expected)} names)")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

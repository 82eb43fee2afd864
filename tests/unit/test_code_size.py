"""Small modules and functions (issue 19): no module in src/ over 400 lines, no function over 60."""

from __future__ import annotations

import ast
from pathlib import Path

import deepsmlm

SRC = Path(deepsmlm.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def long_modules(root: Path, limit: int) -> list[str]:
    """``path: N lines`` of each module under ``root`` longer than ``limit`` lines."""
    sizes = ((p, len(p.read_text(encoding="utf-8").splitlines())) for p in sorted(root.rglob("*.py")))
    return [f"{p.relative_to(root)}: {n} lines" for p, n in sizes if n > limit]


def long_functions(root: Path, limit: int) -> list[str]:
    """``path:line name (N lines)`` of each function or method under ``root`` longer than ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_module_is_over_400_lines():
    assert long_modules(SRC, MAX_MODULE_LINES) == []


def test_no_function_is_over_60_lines():
    assert long_functions(SRC, MAX_FUNCTION_LINES) == []


def test_the_checks_find_what_they_look_for(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "big.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert long_functions(tmp_path, 60) == ["big.py:1 long (61 lines)"]
    assert long_modules(tmp_path, 60) == ["big.py: 65 lines"]
    assert long_modules(tmp_path, 65) == []

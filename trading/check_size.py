"""Lint step (`make lint`): modules a reader can hold (STYLE.md 11).

No Python module in apps/ or trading/ over MAX_MODULE_LINES lines, no function over
MAX_FUNCTION_LINES (from its `def` line to its last line, nested functions included).
The browser modules get the same limits from Biome (biome.json, `make jslint`).
"""

import ast
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
ROOTS = ("apps", "trading")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def problems(path: Path, relative: str) -> list[str]:
    """What is too long in one module: its length, then each function over the limit."""
    text = path.read_text(encoding="utf-8")
    found = []
    lines = text.count("\n") + (not text.endswith("\n") and bool(text))
    if lines > MAX_MODULE_LINES:
        found.append(f"{relative}: {lines} lines (at most {MAX_MODULE_LINES}): split it into cohesive modules")
    for node in ast.walk(ast.parse(text, filename=relative)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{relative}:{node.lineno}: {node.name} has {length} lines (at most {MAX_FUNCTION_LINES})")
    return found


def main(base: Path = BASE_DIR) -> int:
    found = [
        problem
        for root in ROOTS
        for path in sorted((base / root).rglob("*.py"))
        for problem in problems(path, path.relative_to(base).as_posix())
    ]
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""The package keeps the shape docs/architecture.md describes (import directions and private names are checked
by lint-imports and ruff's SLF001 in scripts/test.sh): a few top-level modules, none over 600 lines."""

from __future__ import annotations

from pathlib import Path

import nbcall

PACKAGE = Path(nbcall.__file__).parent


def test_the_top_level_keeps_only_the_entry_points_and_the_exceptions() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, (
        f"nbcall/ has {len(top)} top-level modules ({top}): put new ones in the folder of their side"
    )


def test_no_module_is_over_600_lines() -> None:
    sizes = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text("utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    too_long = {name: lines for name, lines in sizes.items() if lines > 600}
    assert not too_long, f"split these by job (docs/architecture.md): {too_long}"

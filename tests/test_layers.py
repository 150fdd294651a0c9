"""The layer rule: imports only go down (core <- trainer <- inference <- qt)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "karyo_gui" / "core"
FORBIDDEN_IN_CORE = {"PySide6", "torch", "timm", "pytorch_grad_cam", "pyqtgraph", "torchvision"}
LAYERS = ["karyo_gui.core", "trainer", "karyo_gui.inference", "karyo_gui.qt"]  # bottom to top


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return index
    return None


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_neither_qt_nor_torch(path):
    roots = {name.split(".")[0] for name in imported_modules(path)}
    assert not roots & FORBIDDEN_IN_CORE, f"{path.name} imports {roots & FORBIDDEN_IN_CORE}"


def test_importing_the_core_loads_neither_qt_nor_torch():
    """Also catches indirect imports (a core module importing a module that imports torch)."""
    loaded = "{n.split('.')[0] for n in sys.modules}"
    code = (
        "import sys, pkgutil, importlib, karyo_gui.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'karyo_gui.core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(sorted(set({sorted(FORBIDDEN_IN_CORE)!r}) & {loaded}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_every_import_goes_down_the_layers():
    for package in ("karyo_gui", "trainer"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            own = layer_of(module)
            if own is None:
                continue  # the CLI and package roots sit above the layers
            for imported in imported_modules(path):
                other = layer_of(imported)
                assert other is None or other <= own, f"{module} imports {imported} (upward)"


def test_import_linter_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed in this environment")
    result = subprocess.run([str(lint_imports)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr

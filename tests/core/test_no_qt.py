"""The engine must stay importable and usable without Qt (DESIGN.md: the Qt-free core)."""

import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "gradviz" / "core"


def test_core_sources_do_not_import_qt():
    offenders = []
    for path in CORE.rglob("*.py"):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith(("import ", "from ")) and any(q in s for q in ("PySide6", "pyqtgraph", "shiboken6", "PyQt")):
                offenders.append(f"{path.name}:{no}: {s}")
    assert offenders == []


def test_importing_the_engine_loads_no_qt_module():
    code = (
        "import sys, gradviz, gradviz.core.experiment, gradviz.core.runfile, gradviz.core.probes, "
        "gradviz.core.models, gradviz.core.data, gradviz.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

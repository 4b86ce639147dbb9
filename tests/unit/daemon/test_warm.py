"""The daemon's warm-up imports: every listed module exists (the list cannot rot), and a
module that fails to import is skipped."""

from __future__ import annotations

import subprocess
import sys

from dockyard.daemon._warm import WARM_MODULES, warm


def test_every_warm_module_imports_in_a_fresh_interpreter() -> None:
    code = (
        "import sys\nfrom dockyard.daemon._warm import WARM_MODULES, warm\n"
        "assert warm() == len(WARM_MODULES)\n"
        "missing = [m for m in WARM_MODULES if m not in sys.modules]\n"
        "assert not missing, missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_module_that_cannot_be_imported_is_skipped() -> None:
    assert warm(("json", "dockyard.no_such_module", "tarfile")) == 2
    assert "httpx" in WARM_MODULES  # the registry client's, the heaviest

"""The README's Python script runs as it is written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_script_works(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Python\n"):]
    scripts = re.findall(r"```python\n(.*?)```", section, re.S)
    assert scripts, "the README's Python section has no script"
    done = subprocess.run([sys.executable, "-c", scripts[0]], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("BackupSummary(id=")
    assert 'set="web"' in done.stdout

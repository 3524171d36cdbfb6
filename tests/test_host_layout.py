"""scripts/layout.py is one file read two ways: Python on both sides, and sh on the host (common.sh sources
it). Every name must read the same to both, or a script looks for labvm's files where they are not."""

import re
import subprocess

from labvm import vm


def test_sh_and_python_read_the_same_layout():
    names = [name for name in vars(vm.layout) if re.fullmatch(r"[A-Z][A-Z0-9_]*", name)]
    assert "STATE_DIR" in names and "SCRIPTS_DIR" in names
    script = ". ./layout.py\n" + "".join(f'printf "%s\\n" "${name}"\n' for name in names)
    read = subprocess.run(["sh", "-euc", script], cwd=vm.SCRIPTS, capture_output=True, text=True, check=False)
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == [str(vars(vm.layout)[name]) for name in names]

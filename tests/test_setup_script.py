"""scripts/setup.sh on a disk too small for a fresh .venv: one line saying how much it needs and has,
before pip starts (pip itself fails halfway with an OSError and a half-made environment)."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_setup(tmp_path: Path, free_mb: int, *args: str) -> subprocess.CompletedProcess:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", checkout / "scripts" / "setup.sh")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # df -Pm as coreutils prints it, with the free space under test in the fourth column.
    (fake_bin / "df").write_text("#!/bin/sh\necho 'Filesystem 1048576-blocks Used Available Capacity Mounted on'\n"
                                 f"echo '/dev/vda 258048 250000 {free_mb} 99% /'\n")
    (fake_bin / "df").chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(["bash", "scripts/setup.sh", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_full_disk_stops_setup_before_the_venv(tmp_path):
    r = _run_setup(tmp_path, 120, "--test")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("setup: .venv needs about ") and "has 120 MB free: free some space and rerun" in lines[0]
    assert not (tmp_path / "checkout" / ".venv").exists()


def test_the_runtime_alone_needs_less_than_the_tests(tmp_path):
    need = {}
    for args in ((), ("--test",)):
        r = _run_setup(tmp_path / ("test" if args else "runtime"), 1, *args)
        need[args] = int(r.stderr.split("needs about ")[1].split(" MB")[0])
    assert 0 < need[()] < need[("--test",)]

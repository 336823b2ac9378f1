"""The CUDA plugins' own checks: build plugins/ with CMake and run every plugins/bench/*_check.

Each *_check executable compares its kernels with a CPU reference on every launch configuration
and exits non-zero on any mismatch (plugins/README.md). Needs nvcc, CMake and an NVIDIA GPU; the
test skips with the reason when one is missing. Run on the device machine: pytest -m gpu.

BERTQA_PLUGINS_BUILD_DIR=DIR reuses (and incrementally updates) a build folder instead of a fresh
temporary one: a folder of plugins/ alone, or the whole project's build (scripts/gpu_session.sh passes
its `build`, whose plugins/bench already holds every check: nothing is compiled twice);
BERTQA_CUDA_ARCHITECTURES overrides the architectures of a plugins-only build (default: the GPU's,
'native').
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
CHECKS = sorted(p.stem for p in (PLUGINS / "bench").glob("*_check.cu"))

pytestmark = pytest.mark.gpu


def _why_not_runnable() -> str | None:
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        return "nvcc (the CUDA compiler) not found"
    if shutil.which("cmake") is None:
        return "cmake not found"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA GPU: nvidia-smi not found"
    try:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no NVIDIA GPU: nvidia-smi -L failed ({exc})"
    if proc.returncode != 0 or "GPU" not in proc.stdout:
        return f"no NVIDIA GPU: nvidia-smi -L said {proc.stdout.strip() or proc.stderr.strip()!r}"
    return None


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    reason = _why_not_runnable()
    if reason:
        pytest.skip(reason)
    env_dir = os.environ.get("BERTQA_PLUGINS_BUILD_DIR")
    build = Path(env_dir) if env_dir else tmp_path_factory.mktemp("plugins_build")
    env = dict(os.environ)
    nvcc_dir = "/usr/local/cuda/bin"
    if shutil.which("nvcc") is None and os.path.isdir(nvcc_dir):
        env["PATH"] = nvcc_dir + os.pathsep + env.get("PATH", "")
    commands, plugins_dir = build_commands(build)
    for cmd, timeout in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}"
    return plugins_dir


def project_build(build: Path) -> bool:
    """Whether `build` is this checkout's whole-project CMake build (not a plugins/-only one)."""
    cache = build / "CMakeCache.txt"
    if not cache.is_file():
        return False
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith("CMAKE_HOME_DIRECTORY:"):
            return Path(line.split("=", 1)[1]).resolve() == REPO.resolve()
    return False


def build_commands(build: Path) -> tuple[list[tuple[list[str], int]], Path]:
    """The (command, timeout) list that brings the checks in `build` up to date, and the folder whose
    bench/ then holds them: the project's build is only rebuilt (its plugins/ is a subproject, not to
    be configured on its own); any other folder is configured from plugins/ (once) and built."""
    jobs = ["-j", str(os.cpu_count() or 4)]
    if project_build(build):
        return [(["cmake", "--build", str(build), *jobs], 1800)], build / "plugins"
    archs = os.environ.get("BERTQA_CUDA_ARCHITECTURES", "native")
    configure = ["cmake", "-S", str(PLUGINS), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_CUDA_ARCHITECTURES={archs}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"] if not (build / "CMakeCache.txt").exists() else []
    return [(configure, 600), (["cmake", "--build", str(build), *jobs], 1800)], build


@pytest.mark.parametrize("check", CHECKS)
def test_plugin_check(build_dir: Path, check: str):
    exe = build_dir / "bench" / check
    assert exe.exists(), f"{exe} was not built"
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=1800)
    print(proc.stdout)  # shown with -s or on failure: checks and the timing table
    assert proc.returncode == 0, (
        f"{check} exited with {proc.returncode}:\n{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}")


def _run_attention_check(build_dir: Path, args: list[str], kernel: str) -> subprocess.CompletedProcess:
    exe = build_dir / "bench" / "attention_check"
    assert exe.exists(), f"{exe} was not built"
    env = dict(os.environ, BERTQA_ATTENTION_KERNEL=kernel)
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=1800, env=env)


def test_attention_kernel_env_invalid(build_dir: Path):
    """A value of BERTQA_ATTENTION_KERNEL other than auto|mma|wgmma is an error (std::invalid_argument
    from the plugin), not a silent default."""
    proc = _run_attention_check(build_dir, ["0", "fp16", "--no-bench"], "tensorcores")
    assert proc.returncode == 3, f"exit {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert "BERTQA_ATTENTION_KERNEL must be auto, mma or wgmma" in proc.stdout, proc.stdout[-4000:]


def test_attention_kernel_env_wgmma(build_dir: Path):
    """BERTQA_ATTENTION_KERNEL=wgmma: the launcher's own choice ("auto" rows) runs the Hopper kernel
    where it can (fp16, head size 64, compute capability 9.0), mma.sync elsewhere; all checks pass."""
    proc = _run_attention_check(build_dir, ["0", "fp16", "--no-bench"], "wgmma")
    print(proc.stdout)
    assert proc.returncode == 0, f"attention_check exited with {proc.returncode}:\n{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}"
    auto_rows = [line for line in proc.stdout.splitlines() if line.startswith("auto ")]
    assert auto_rows, proc.stdout[-4000:]
    if "Hopper wgmma kernel available" in proc.stdout:
        assert all(" wgmma " in line for line in auto_rows), "\n".join(auto_rows)
    else:
        assert all(" mma " in line for line in auto_rows), "\n".join(auto_rows)

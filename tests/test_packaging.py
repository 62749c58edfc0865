"""The wheel: every package is listed in `pyproject.toml`, the card templates of the top-level `model_cards/` folder
ship inside it, and `hf-distill card` run from an installed wheel (not the source tree) finds them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from tests.test_card import _provenance

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(path.name for path in (ROOT / "model_cards").iterdir() if path.is_file())


def _setuptools():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_package_list_matches_the_tree():
    on_disk = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "hf_distill").rglob("__init__.py")}
    assert set(_setuptools()["packages"]) == on_disk | {"hf_distill.model_cards"}
    assert _setuptools()["package-dir"] == {"hf_distill.model_cards": "model_cards"}
    assert {"dataset_card.md.jinja", "space_readme.md", "student_card.md.jinja"} <= set(TEMPLATES)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed (without dependencies) into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a clean copy: setuptools reuses a build/ folder, which may hold moved modules
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(root / "dist")], check=True, cwd=root)
    wheel = next((root / "dist").glob("hf_distill-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(root / "site"),
                    str(wheel)], check=True, cwd=root)
    return root / "site"


def _run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from hf_distill.cli import main; sys.exit(main())"
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_hf_distill_card_from_an_installed_wheel_finds_the_templates(installed, tmp_path):
    assert sorted(path.name for path in (installed / "hf_distill" / "model_cards").iterdir()) == TEMPLATES
    where = subprocess.run([sys.executable, "-c", "import hf_distill.templates as t; print(t.MODEL_CARDS_DIR)"],
                           cwd=tmp_path, env={"PYTHONPATH": str(installed)}, capture_output=True, text=True,
                           check=True)
    assert Path(where.stdout.strip()) == installed / "hf_distill" / "model_cards"  # not the source checkout's
    folder = tmp_path / "student"
    _provenance().save(folder)
    done = _run_installed(installed, tmp_path, "card", "--folder", str(folder))
    assert done.returncode == 0, done.stderr
    card = ModelCard.load(folder / "README.md")
    assert "Qwen/Qwen2.5-7B-Instruct" in card.text and card.data.license == "apache-2.0"
    version = _run_installed(installed, tmp_path, "--version")
    assert version.stdout.strip() == f"hf-distill {_version()}"


def _version() -> str:
    namespace: dict = {}
    exec((ROOT / "hf_distill" / "_version.py").read_text(), namespace)
    return namespace["__version__"]

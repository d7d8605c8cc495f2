"""The package's shape: layers that import only downward, and a start-up that does not load torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_import_only_downward():
    """The import-linter contract in pyproject.toml (the layer order of SPEC section 7) is kept."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 1 kept, 0 broken." in done.stdout


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_metaanchor_and_the_command_line_parser_do_not_load_torch():
    assert "torch" not in _modules_after("import metaanchor")
    loaded = _modules_after("from metaanchor.cli import build_parser\nbuild_parser()")
    assert not {"torch", "torchvision", "numpy", "matplotlib"} & loaded


def test_lazy_names_resolve_to_the_library_objects():
    import metaanchor
    from metaanchor.families import load_detector
    from metaanchor.families.retinanet import RetinaNetDetector
    from metaanchor.geometry.anchors import AnchorSet

    assert metaanchor.Detector is RetinaNetDetector and metaanchor.AnchorSet is AnchorSet
    assert metaanchor.load_detector is load_detector
    assert set(metaanchor.__all__) <= set(dir(metaanchor))


def test_nothing_installed_refers_to_the_checkout():
    """The package runs outside a checkout: no path to the repository's reports, configs or data."""
    offenders = [f"{p.relative_to(ROOT)}: {needle}" for p in (ROOT / "src" / "metaanchor").rglob("*.py")
                 for needle in ('"reports', "'reports", '"configs/', "'configs/", "../shared")
                 if needle in p.read_text()]
    assert offenders == []

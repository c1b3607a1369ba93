"""Dependency boundaries: the engine imports nothing of the project, the web never imports torch."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"config", "governance", "django", "rest_framework", "celery"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_engine_imports_neither_django_nor_the_project():
    offenders = []
    for path in sorted((ROOT / "generation" / "engine").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES or (
                top == "generation" and not name.startswith("generation.engine")
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_no_top_level_platform_package_shadows_the_standard_library():
    assert not (ROOT / "platform").exists()


def test_web_process_never_imports_torch():
    probe = (
        "import sys, django; django.setup();"
        "from django.urls import get_resolver; from django.test import Client;"
        "import config.urls, config.wsgi;"
        "[get_resolver().resolve(p) for p in ('/api/v1/jobs/', '/api/v1/health/')];"
        "from generation.engine.tokenizer import default_tokenizer;"
        "assert default_tokenizer().count('a red circle') == 5;"
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

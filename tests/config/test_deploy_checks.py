"""Production settings pass Django's deployment checklist with no warning."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "p9$Xk2!vQz7@Lm4#Rt8^Wn1&Yc5*Hb3(Jd6)Fg0_Ks2+Qa7=Ze4-Ux9~Io1",
    "AUDIT_HMAC_KEY": "production-like-audit-key-0123456789abcdefghij",
    "PROVENANCE_SIGNING_KEY": "production-like-provenance-key-0123456789abcdefghij",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "DJANGO_ALLOWED_HOSTS": "varclip.example.com",
}


def _manage(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1", **PRODUCTION, **(extra or {})}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_at_warning_level(tmp_path):
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", extra={"VAR_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_turning_https_off_in_production_is_flagged(tmp_path):
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        extra={"VAR_DIR": str(tmp_path), "DJANGO_SECURE_SSL_REDIRECT": "0"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr

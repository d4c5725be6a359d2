"""Replay the Dockerfile's build steps without Docker, so a broken image build shows up in ``make test``.

There is no Docker engine on the CI machine. What can break an image build is still checkable: the Astro
Runtime's ONBUILD installs ``requirements.txt`` with plain pip (so the lock must install with pip, not only uv),
and our ``RUN`` steps must succeed in the project as the image has it. This module reads the Dockerfile, installs
the lock with pip into a clean virtualenv (``.local/image-replay/venv``, rebuilt when the lock changes), copies the
tracked files of the project, and runs the Dockerfile's ``ENV`` and ``RUN`` instructions there in order.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crm_pipeline.paths import LOCAL_DIR, PROJECT_DIR

REPLAY_DIR = LOCAL_DIR / "image-replay"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, argument = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), argument.strip(), start))
        buffer = ""
    return instructions


def parse_env(argument: str) -> dict[str, str]:
    """``ENV K=V K2="v 2"`` (the form hadolint asks for)."""
    env = {}
    for token in shlex.split(argument):
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"ENV {argument!r}: use the KEY=VALUE form")
        env[key] = value
    return env


def _lock_digest() -> str:
    return hashlib.sha256((PROJECT_DIR / "requirements.txt").read_bytes()).hexdigest()


def ensure_pip_venv(venv: Path) -> Path:
    """A venv with the lock installed by plain pip, as the Runtime's ONBUILD step does."""
    stamp = venv / ".lock-sha256"
    if stamp.exists() and stamp.read_text() == _lock_digest():
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(PROJECT_DIR / "requirements.txt")], check=True)
    stamp.write_text(_lock_digest())
    return venv / "bin"


def copy_tracked_files(target: Path) -> None:
    """The project as the image's build context has it: tracked files only (no .local, no build output)."""
    shutil.rmtree(target, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_DIR, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = PROJECT_DIR / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def replay(dockerfile: Path = PROJECT_DIR / "Dockerfile") -> list[str]:
    """Run the Dockerfile's steps; return one line per step. Raises CalledProcessError on a failing RUN."""
    instructions = parse_dockerfile(dockerfile.read_text())
    bin_dir = ensure_pip_venv(REPLAY_DIR / "venv")
    project = REPLAY_DIR / "project"
    copy_tracked_files(project)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(REPLAY_DIR), "LANG": "C.UTF-8"}
    done = [f"ONBUILD equivalent: pip install -r requirements.txt into {bin_dir.parent} (clean venv)"]
    for step in instructions:
        if step.keyword == "ENV":
            env.update({k: v.replace("/usr/local/airflow", str(project)) for k, v in parse_env(step.argument).items()})
        elif step.keyword == "RUN":
            subprocess.run(["bash", "-euo", "pipefail", "-c", step.argument], cwd=project, env=env, check=True)
        elif step.keyword not in {"FROM", "LABEL", "ARG", "USER", "WORKDIR"}:
            raise ValueError(f"Dockerfile line {step.line}: {step.keyword} is not replayed; extend image_replay.py")
        done.append(f"line {step.line}: {step.keyword} {step.argument[:80]}")
    return done


def parse_dags_in_image(project: Path, bin_dir: Path) -> dict[str, object]:
    """Parse ``dags/`` with the image's Python and PYTHONPATH, rendering from the manifest the build baked in."""
    import json

    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(project / "include"),
        "AIRFLOW_HOME": str(REPLAY_DIR / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{REPLAY_DIR / 'airflow' / 'unused.db'}",
        "CRM_PROJECT_DIR": str(project),
        "PYTHONWARNINGS": "ignore",
    }
    probe = project / "tests" / "dags" / "dagbag_probe.py"
    proc = subprocess.run(
        [str(bin_dir / "python"), str(probe), str(project / "dags")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
    )
    if proc.returncode != 0:
        raise SystemExit(f"parsing the DAGs in the replayed image failed:\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    for line in replay():
        print(f"  {line}")
    project = REPLAY_DIR / "project"
    manifest = project / "dbt_project" / "target" / "manifest.json"
    if not manifest.exists():
        raise SystemExit(f"the replayed build did not produce {manifest}")
    print(f"  the image's dbt manifest: {manifest}")
    parsed = parse_dags_in_image(project, REPLAY_DIR / "venv" / "bin")
    if parsed["import_errors"] or not parsed["dags"]:
        raise SystemExit(f"DAGs do not parse in the replayed image: {parsed['import_errors']}")
    print(f"  DAGs parse in the image's environment: {', '.join(sorted(parsed['dags']))}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

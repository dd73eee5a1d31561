"""docker-compose.yml and the Dockerfile (Docker cannot run here): the compose file parses, has every service with
health checks, named volumes and the token from an env file, publishes only the API, and every service's command is
a real entry point whose flags its --help lists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_health_volumes_and_secrets() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "api", "worker", "ray-head", "ray-worker"}
    for name, service in services.items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name
        assert service.get("env_file") == ".env", name
    assert set(compose["volumes"]) == {"pgdata", "data"}
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"api"}  # the Ray dashboard and PostgreSQL stay inside the compose network
    assert "--dashboard-host=127.0.0.1" in services["ray-head"]["command"]
    env = (ROOT / ".env.example").read_text()
    assert "BRAINSEARCH_API_TOKEN=" in env and "POSTGRES_PASSWORD=" in env
    url = services["api"]["environment"]["BRAINSEARCH_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert "${POSTGRES_PASSWORD}" in url  # never a literal secret in the file
    assert not re.search(r"(TOKEN|PASSWORD)\s*[:=]\s*[\"']?[A-Za-z0-9]{6,}", (ROOT / "docker-compose.yml").read_text())


def _help(executable: str, args: list[str]) -> str:
    done = subprocess.run([executable, *args, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_command_exists_with_its_flags() -> None:
    bin_dir = Path(sys.executable).parent
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if command is None:
            continue
        program, *args = command
        subcommand = [a for a in args if not a.startswith("-")][:1]
        help_text = _help(str(bin_dir / program), subcommand)
        for flag in (a.split("=")[0] for a in args if a.startswith("--")):
            assert flag in help_text, f"{name}: {program} {' '.join(subcommand)} has no {flag}"


def test_dockerfile_installs_the_pinned_package_and_runs_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in text and ".[ray,postgres]" in text
    assert re.search(r"^USER \w+", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])", text, re.M)
    assert cmd is not None
    program, subcommand, *flags = yaml.safe_load(cmd.group(1))
    help_text = _help(str(Path(sys.executable).parent / program), [subcommand])
    assert all(f in help_text for f in flags if f.startswith("--"))

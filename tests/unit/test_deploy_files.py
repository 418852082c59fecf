"""The deployment files (deploy/) run commands and set variables this imagegate has: every
``imagegate`` command line of the compose file and the Kubernetes manifests parses with the
CLI's own parser, and every ``IMAGEGATE_*`` variable they set is a setting."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagegate.cli import build_parser
from imagegate.config import ENV_PREFIX, Settings

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
KUBERNETES = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
NOT_SETTINGS = {"models", "routes", "config_file"}
VARIABLES = {ENV_PREFIX + "CONFIG"}  # the configuration file: read by Settings.load, no setting


def _documents() -> Iterator[tuple[str, Any]]:
    yield COMPOSE.name, yaml.safe_load(COMPOSE.read_text())
    for path in KUBERNETES:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def _is_imagegate(image: str) -> bool:
    return image.rsplit("/", 1)[-1].startswith("imagegate")


def _command_lines() -> Iterator[tuple[str, list[str]]]:
    """(file, argv after ``imagegate``) for every container of the imagegate image."""
    for name, doc in _documents():
        if name == COMPOSE.name:
            for service, spec in doc["services"].items():
                if _is_imagegate(spec.get("image", "")):
                    yield f"{name}:{service}", [str(a) for a in spec.get("command", [])]
            continue
        template = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in template.get("containers", []) + template.get("initContainers", []):
            if _is_imagegate(container["image"]):
                command = [str(a) for a in container.get("command", ["imagegate"])]
                assert command == ["imagegate"], (name, command)  # the image's entrypoint
                yield f"{name}:{container['name']}", [str(a) for a in container["args"]]


def _variables() -> Iterator[tuple[str, str]]:
    """(file, name) of every IMAGEGATE_* variable the files set."""
    for name, doc in _documents():
        found: list[str] = []
        if name == COMPOSE.name:
            for spec in doc["services"].values():
                found += list(spec.get("environment", {}))
        elif doc.get("kind") in ("ConfigMap", "Secret"):
            found += list(doc.get("data", {})) + list(doc.get("stringData", {}))
        else:
            template = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in template.get("containers", []):
                found += [e["name"] for e in container.get("env", [])]
        yield from ((name, v) for v in sorted(set(found)) if v.startswith(ENV_PREFIX))


COMMANDS = sorted(_command_lines())
WORKERS = [(where, argv) for where, argv in COMMANDS if "--models" in argv]
VARIABLE_USES = sorted(set(_variables()))


def _subcommand(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the command (and action) ``argv`` starts with; fails naming the word no
    command has."""
    words = [w for w in argv if not w.startswith("-")]
    for word in words:
        choices = _choices(parser)
        if choices is None:
            break
        assert word in choices, f"imagegate has no command {word!r} (it has {sorted(choices)})"
        parser = choices[word]
    return parser


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def test_the_files_run_imagegate_and_set_its_variables() -> None:
    assert {name.split(":")[0] for name, _ in COMMANDS} >= {
        "docker-compose.yml", "api.yaml", "worker-gpu.yaml", "sweeper.yaml", "migrate-job.yaml"}
    assert [argv[0] for _, argv in COMMANDS if argv].count("api") == 3  # compose x2, Kubernetes
    assert [where for where, _ in WORKERS] == ["worker-gpu.yaml:worker"]
    assert len(VARIABLE_USES) > 10


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_flag_is_one_the_command_has(where: str, argv: list[str]) -> None:
    parser = build_parser()
    command = _subcommand(parser, argv)
    flags = {o for action in command._actions for o in action.option_strings}
    flags |= {o for action in parser._actions for o in action.option_strings}
    used = [w.split("=", 1)[0] for w in argv if w.startswith("--")]
    missing = [flag for flag in used if flag not in flags]
    assert not missing, f"{where}: imagegate {argv[0]} has no {', '.join(missing)}"
    args = parser.parse_args(argv)  # the values parse too (ports, counts, model lists)
    assert hasattr(args, "run"), f"{where}: {argv} names no action"


@pytest.mark.parametrize(("where", "argv"), WORKERS, ids=[w for w, _ in WORKERS])
def test_every_model_a_worker_claims_is_in_the_catalogue(where: str, argv: list[str]) -> None:
    models = argv[argv.index("--models") + 1].split(",")
    catalogue = Settings.load(env={}).models
    assert [m for m in models if m not in catalogue] == [], where


@pytest.mark.parametrize(("where", "name"), VARIABLE_USES,
                         ids=[f"{w}:{n}" for w, n in VARIABLE_USES])
def test_every_variable_is_a_setting(where: str, name: str) -> None:
    settings = {f.name for f in dataclasses.fields(Settings)} - NOT_SETTINGS
    setting = name.removeprefix(ENV_PREFIX).lower()
    assert name in VARIABLES or setting in settings, f"{where}: {name} is no setting"

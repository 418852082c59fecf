"""Other names of catalogue models, which the facades take (catalogue.py ``aliases``,
routing.py ``Routing.resolve``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegate.config import Settings
from imagegate.errors import ConfigError, NotFound
from imagegate.routes.registry import declared_capabilities
from imagegate.routing import Routing

GOOGLE_IDS = {
    "gemini-nano-banana-2.1": "nano-banana-2.1",
    "gemini-3.1-flash-image": "nano-banana-2",
    "gemini-3.1-flash-image-preview": "nano-banana-2",
    "gemini-3.1-flash-lite-image": "nano-banana-2-lite",
    "gemini-3-pro-image": "nano-banana-pro",
    "gemini-3-pro-image-preview": "nano-banana-pro",
    "gemini-2.5-flash-image": "nano-banana",
}


def routing_of(settings: Settings) -> Routing:
    return Routing(settings.models, declared_capabilities(settings.routes))


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "imagegate.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.load(config_file=str(path), env={})


@pytest.mark.parametrize(("google_id", "model_id"), sorted(GOOGLE_IDS.items()))
def test_google_ids_current_and_retired_name_the_model_they_served(google_id: str,
                                                                   model_id: str) -> None:
    assert routing_of(Settings.load(env={})).resolve(google_id) == model_id


@pytest.mark.parametrize("openai_id", ["gpt-image-1", "gpt-image-1.5", "dall-e-3", "dall-e-2"])
def test_openai_image_model_ids_name_the_flagship(openai_id: str) -> None:
    assert routing_of(Settings.load(env={})).resolve(openai_id) == "nano-banana-2"


def test_a_model_id_names_itself_and_an_unknown_name_is_not_found() -> None:
    routing = routing_of(Settings.load(env={}))
    assert routing.resolve("nano-banana-pro") == "nano-banana-pro"
    with pytest.raises(NotFound, match="unknown model"):
        routing.resolve("gpt-4o")


def test_a_model_table_replaces_its_default_aliases(tmp_path: Path) -> None:
    settings = load(tmp_path, '[models."nano-banana-pro"]\naliases = ["house-pro"]\n')
    routing = routing_of(settings)
    assert routing.resolve("house-pro") == "nano-banana-pro"
    with pytest.raises(NotFound):
        routing.resolve("gemini-3-pro-image")


def test_a_name_that_would_name_two_models_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models.nano-banana-pro.aliases: 'gpt-image-1' "
                                          r"already names model 'nano-banana-2'"):
        load(tmp_path, '[models."nano-banana-pro"]\naliases = ["gpt-image-1"]\n')


def test_an_alias_may_not_be_another_models_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already names model 'nano-banana-2'"):
        load(tmp_path, '[models."nano-banana-pro"]\naliases = ["nano-banana-2"]\n')


@pytest.mark.parametrize("value", ['"gpt-image-1"', '[1]', '[""]'])
def test_aliases_must_be_a_list_of_names(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"models\.house\.aliases must be a list of model names"):
        load(tmp_path, f'[models.house]\naliases = {value}\n')

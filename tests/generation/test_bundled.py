"""The bundled checkpoint registers with a card and sampling defaults the registry accepts."""

import pytest

from generation.bundled import (
    TRAINED_DEMO_DIR,
    registry_card,
    registry_sampling_defaults,
)
from governance.registry.services import (
    model_card_validate,
    model_version_register,
    sources_from_directory,
)


def test_the_trained_demo_card_maps_onto_the_registry_card():
    card = model_card_validate(registry_card(TRAINED_DEMO_DIR))
    assert 5 <= card["typical_caption_tokens"] <= 20
    assert "shapes-v2" in card["training_data_provenance"]
    assert card["evaluation_results"]["rows"]


def test_a_checkpoint_without_a_training_card_gets_an_honest_one(tiny_checkpoint_dir):
    card = model_card_validate(registry_card(tiny_checkpoint_dir))
    assert "Untrained" in card["limitations"]
    assert registry_sampling_defaults(tiny_checkpoint_dir) == {}


@pytest.mark.django_db
def test_the_demo_model_registers_with_its_evaluation_sampling():
    version = model_version_register(
        model_name="demo-check",
        sources=sources_from_directory(TRAINED_DEMO_DIR),
        registered_by=None,
        model_card=registry_card(TRAINED_DEMO_DIR),
        sampling_defaults=registry_sampling_defaults(TRAINED_DEMO_DIR),
    )
    assert version.sampling_defaults["top_k"] <= version.engine_config["vqvae"]["vocab_size"]
    assert (
        version.model_card["typical_caption_tokens"]
        == registry_card(TRAINED_DEMO_DIR)["typical_caption_tokens"]
    )

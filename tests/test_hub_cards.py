"""pixeltok.hub_cards: the PxBy model card is filled from a run's results, with a parseable model-index."""

import pytest
from huggingface_hub import ModelCard

from pixeltok.hub_cards import render_pxby_model_card


def results(**over):
    r = {
        "model_name": "pxby-test", "num_parameters": 1234, "seed": 0, "pixeltok_version": "0.1.0",
        "model_config": {"backbone": "transformer", "hidden_size": 81, "num_hidden_layers": 2, "embedding_type": "pxby",
                         "use_conv": True, "kernel_size": 3, "embed_dim": 9, "vocab_size": 157, "num_colors": 56,
                         "return_dict": True},
        "dataset": {"name": "sprites", "source": "org/sprites", "license": "cc0-1.0", "splits": {"train": 80, "test": 10},
                    "long_side": 25, "lowercase": True, "seed": 0, "order": "caption_first"},
        "training": {"world_size": 2, "steps": 100, "device": "cpu", "wall_time_s": 12.5, "tokens_per_second": 900.0,
                     "best_step": 80, "best_val_loss": 1.5, "hyperparameters": {"learning_rate": 0.002}},
        "test": {"loss": 1.6, "bits_per_token": 2.308, "token_accuracy": 0.61, "hamming": 0.2, "cosine": 0.9,
                 "bleu": 0.7, "num_windows": 30, "num_sequences": 10, "context_length": 64, "generation_length": 16},
    }
    r.update(over)
    return r


def test_card_metadata_and_text(tmp_path):
    card = render_pxby_model_card(results(), repo_id="me/pxby", revision="v1")
    card.save(tmp_path / "README.md")
    back = ModelCard.load(tmp_path / "README.md")
    metrics = {e.metric_type: e.metric_value for e in back.data.eval_results}
    assert metrics == {"hamming": 0.2, "cosine": 0.9, "bleu": 0.7, "accuracy": 0.61, "bits_per_token": 2.308, "loss": 1.6}
    assert back.data.datasets == ["org/sprites"] and back.data.license == "apache-2.0"
    assert "transformer" in back.data.tags and back.data.pipeline_tag == "text-generation"
    text = back.text
    assert 'from_pretrained(repo, revision="v1")' in text and 'repo = "me/pxby"' in text
    assert "tokenizer.caption_ids(" in text  # caption-first models are prompted with a caption
    assert "| hamming" not in text and "| Hamming distance (windows) | 0.2 |" in text
    assert "return_dict" not in text  # generic PretrainedConfig fields stay out of the config table
    assert "cc0-1.0" in text and "2 process(es)" in text


def test_missing_results_are_named():
    r = results()
    del r["test"]
    with pytest.raises(KeyError, match="'test'"):
        render_pxby_model_card(r)
    with pytest.raises(ValueError, match="nothing to report"):
        render_pxby_model_card(results(test={"num_windows": 0}))


def test_drawer_and_dediffusion_cards_carry_their_held_out_numbers():
    from huggingface_hub import ModelCard

    from pixeltok.hub_cards import render_dediffusion_model_card, render_drawer_model_card

    training = {"steps": 7, "world_size": 1, "device": "cpu", "train_minutes": 1.5, "tokens_per_second": 900.0,
                "hyperparameters": {"learning_rate": 0.002}}
    drawer = {"model_type": "llama", "num_parameters": 1234, "processor": {"palette": {"name": "scenes", "colors": [
        ["red", "#ff0000"]]}, "layout": "raster", "pack": 3}, "tokenizer": "bpe", "training": training,
        "dataset": {"source": "scenes", "splits": {"train": 10, "test": 4}, "seed": 0},
        "test": {"caption": {"bits_per_image_token": 0.1234, "bits_per_image": 24.0, "pixel_accuracy": 0.9},
                 "none": {"bits_per_image_token": 0.5678, "bits_per_image": 110.0}, "tokens_per_image": 197.0,
                 "examples": [{"caption": "a red circle"}]}}
    card = render_drawer_model_card(drawer, repo_id="me/drawer")
    assert card.data.pipeline_tag == "text-to-image" and "| caption | 0.1234 | 90.0% |" in card.text
    assert "| none | 0.5678 | n/a |" in card.text and "me/drawer" in card.text
    assert ModelCard(str(card)).data.eval_results[0].metric_value == 0.1234
    dd = {"num_parameters": 99, "encoder_config": {"num_queries": 15, "tau_start": 1.0, "tau_end": 0.3,
                                                   "tau_decay_steps": 100, "tau_schedule": "cosine"},
          "num_text_tokens": 300, "decoder": "runs/draw", "dataset": {"source": "scenes"}, "training": training,
          "test": {"bits_per_image_token": 0.2468, "bits_per_image": 48.0, "num_images": 4,
                   "examples": [{"truth": "a red circle top, on white", "text": "a red circle top, on white"}]}}
    card = render_dediffusion_model_card(dd)
    assert "K = 15" in card.text and "0.2468 bits per image token" in card.text
    assert "| a red circle top, on white | `a red circle top, on white` |" in card.text
    with pytest.raises(KeyError, match="test"):
        render_dediffusion_model_card({"training": {}, "dataset": {}})

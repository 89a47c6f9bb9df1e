"""The model's own context limit, derived from its config as vLLM derives it."""

import pytest

from guanaco_dagster.stages.context_length import ContextLimit, model_context_limit, served_max_model_len


@pytest.mark.parametrize(
    ("config", "tokenizer_config", "expected"),
    [
        ({"max_position_embeddings": 512}, None, ContextLimit(512, "max_position_embeddings")),
        ({"n_positions": 1024}, None, ContextLimit(1024, "n_positions")),  # GPT-2
        ({"max_position_embeddings": 4096, "seq_length": 2048}, None, ContextLimit(2048, "seq_length")),
        (
            {"text_config": {"max_position_embeddings": 8192}},
            None,
            ContextLimit(8192, "max_position_embeddings"),
        ),
        (
            {"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": 2.0}},
            None,
            ContextLimit(4096, "max_position_embeddings"),
        ),
        (
            {"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
            None,
            ContextLimit(131072, "max_position_embeddings"),
        ),
        (
            {"max_position_embeddings": 4096},
            {"model_max_length": 1024},
            ContextLimit(1024, "tokenizer model_max_length"),
        ),
        (
            {"max_position_embeddings": 4096},
            {"model_max_length": 1e30},
            ContextLimit(4096, "max_position_embeddings"),
        ),
        ({"hidden_size": 64}, None, None),
        ({"max_position_embeddings": True}, None, None),
    ],
)
def test_the_context_limit_comes_from_the_keys_vllm_reads(config, tokenizer_config, expected):
    assert model_context_limit(config, tokenizer_config) == expected


def test_the_served_length_is_the_smaller_of_the_models_and_the_platforms():
    assert served_max_model_len(ContextLimit(512, "max_position_embeddings"), 2048) == 512
    assert served_max_model_len(ContextLimit(32768, "max_position_embeddings"), 2048) == 2048
    assert served_max_model_len(None, 2048) == 2048

"""Tiny random models built once per session; tests that mutate a model get a deep copy."""

import copy

import pytest

from encoder.testing import tiny_model

ARCHITECTURES = ("llama", "mistral", "qwen2")


@pytest.fixture(scope="session")
def _tiny_models():
    return {arch: tiny_model(arch) for arch in ARCHITECTURES}


@pytest.fixture(params=ARCHITECTURES)
def model(request, _tiny_models):
    return copy.deepcopy(_tiny_models[request.param])


@pytest.fixture
def llama(_tiny_models):
    return copy.deepcopy(_tiny_models["llama"])

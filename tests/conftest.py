"""Test set-up: never reach the network, keep every cache in a temporary folder, build tiny models on the spot."""

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="hf_distill_tests_home_")
os.environ.setdefault("HF_HOME", _HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_HOME, "datasets"))
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DISTILL_CACHE", os.path.join(_HOME, "hf_distill_cache"))

import pytest  # noqa: E402

from tests import tiny  # noqa: E402
from tests.hub_server import hub_server, hub_server_session  # noqa: E402,F401  (local Hub-API server fixtures)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.fixture(scope="session")
def other_tokenizer():
    """A tokenizer trained on other text: same size class, different vocabulary."""
    return tiny.build_tokenizer(corpus=tiny.OTHER_CORPUS, seed_words=("zeta", "omega"))


@pytest.fixture(scope="session")
def model_factory(tokenizer):
    return tiny.ModelFactory(tokenizer)

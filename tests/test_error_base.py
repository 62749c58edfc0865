"""`HfDistillError` is the base of every error class hf_distill defines, each keeping the builtin it always was, and
docs/errors.md lists them all."""

import ast
import importlib
from pathlib import Path

import pytest

from hf_distill.errors import HfDistillError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
# Copied verbatim into a Space as app.py: it imports nothing from hf_distill, so it cannot use the base class.
STANDALONE = {"hf_distill/publish/space/app_template.py"}


def _error_classes() -> list[tuple[str, str]]:
    """(module, name) of every exception class defined in the package, whatever its name."""
    found = []
    for path in sorted((ROOT / "hf_distill").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in STANDALONE:
            continue
        module = relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        names = [node.name for node in ast.parse(path.read_text(encoding="utf-8")).body
                 if isinstance(node, ast.ClassDef) and node.name != "HfDistillError"]
        if names:
            loaded = importlib.import_module(module)
            found += [(module, name) for name in names if issubclass(getattr(loaded, name), BaseException)]
    return found


ERRORS = _error_classes()


def test_the_package_defines_errors():
    assert len(ERRORS) >= 28  # the walk finds them: a broken walk would make the checks below vacuous


@pytest.mark.parametrize("module,name", ERRORS, ids=[name for _, name in ERRORS])
def test_every_error_class_is_an_hf_distill_error_and_keeps_its_builtin(module, name):
    error = getattr(importlib.import_module(module), name)
    assert issubclass(error, HfDistillError)
    builtin = [base for base in error.__mro__ if base.__module__ == "builtins" and base not in (object,)]
    assert builtin[0] is not Exception, f"{name} must stay a subclass of a specific builtin (e.g. ValueError)"


def test_every_error_class_is_listed_in_the_docs():
    text = DOC.read_text(encoding="utf-8").split("## Error classes", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for _, name in ERRORS if f"`{name}`" not in text)
    assert "`hf_distill.HfDistillError`" in text and not missing, f"not in docs/errors.md: {missing}"


def test_raised_argument_errors_are_hf_distill_errors():
    import torch

    from hf_distill.losses import distillation_loss
    from hf_distill.training import DistillationCollator

    logits = torch.zeros(1, 2, 3)
    for kwargs, message in (({"divergence": "kl"}, "Unknown divergence"), ({"reduction": "max"}, "Unknown reduction")):
        with pytest.raises(HfDistillError, match=message):
            distillation_loss(logits, logits, **kwargs)
    with pytest.raises(HfDistillError, match="differ in shape"):
        distillation_loss(logits, torch.zeros(1, 2, 4))
    collator = DistillationCollator(pad_token_id=0, padding_free=True, teacher_columns={"teacher_topk_ids": 0})
    with pytest.raises(HfDistillError, match="padding-free"):
        collator.torch_call([{"input_ids": [1, 2]}])

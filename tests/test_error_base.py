"""`HfDistillError` is the base of every error class hf_distill defines, each keeping the builtin it always was, and
docs/errors.md lists them all; the package raises no other exception on purpose."""

import ast
import builtins
import importlib
from pathlib import Path

import pytest

from hf_distill.errors import HfDistillError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
# Copied verbatim into a Space as app.py: it imports nothing from hf_distill, so it cannot use the base class.
STANDALONE = {"hf_distill/publish/space/app_template.py"}
#: (module file, exception class) the package may raise although it is no `HfDistillError`, and why.
NOT_HF_DISTILL_ERRORS = {
    ("hf_distill/_lazy.py", "AttributeError"):
        "a module's `__getattr__` must raise AttributeError for a missing name (hasattr and from-imports rely on it)",
    ("hf_distill/teachers/served.py", "AttributeError"): "the prefetching collator's `__getattr__`: the same protocol",
    ("hf_distill/teachers/base.py", "NotImplementedError"):
        "the hooks a `TeacherSource` subclass must implement: a contract for its author, not a diagnosed input",
}


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


def _resolve(namespace: dict, node: ast.expr):
    """The object a raised expression's name (`Name` or `a.b.C`) stands for in a module, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    value = namespace.get(node.id, getattr(builtins, node.id, None))
    for part in reversed(parts):
        value = getattr(value, part, None)
    return value


def _raised_exception_classes() -> list[tuple[str, int, type]]:
    """(file, line, class) of every `raise X(...)` / `raise X` in the package whose X names an exception class,
    resolved in the module's namespace (so an imported third-party error counts as well as a builtin)."""
    raised = []
    for path in sorted((ROOT / "hf_distill").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in STANDALONE:
            continue
        module = importlib.import_module(relative.removesuffix(".py").removesuffix("/__init__").replace("/", "."))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                value = _resolve(vars(module), target)
                if isinstance(value, type) and issubclass(value, BaseException):
                    raised.append((relative, node.lineno, value))
    return raised


def test_the_package_raises_only_hf_distill_errors():
    raised = _raised_exception_classes()
    assert sum(issubclass(error, HfDistillError) for _, _, error in raised) >= 100  # the walk finds the raises
    others = {(path, error.__name__) for path, _, error in raised if not issubclass(error, HfDistillError)}
    unexplained = sorted(f"{path}:{line}: raise {error.__name__}" for path, line, error in raised
                         if (path, error.__name__) in others - set(NOT_HF_DISTILL_ERRORS))
    assert not unexplained, (
        "raise a subclass of HfDistillError and the builtin (e.g. `class MyError(HfDistillError, ValueError)`, listed "
        f"in docs/errors.md), or add the place to NOT_HF_DISTILL_ERRORS with the reason: {unexplained}"
    )
    assert set(NOT_HF_DISTILL_ERRORS) <= others, f"no longer raised: {sorted(set(NOT_HF_DISTILL_ERRORS) - others)}"

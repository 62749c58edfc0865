"""The README's example runs as written, on tiny local models in place of the two folders."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Distil one local model into another", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path, model_factory, monkeypatch):
    code = _example()
    assert len(code.strip().splitlines()) <= 15
    teacher = model_factory.save(tmp_path / "my-teacher", "llama", hidden=48, seed=2)
    student = model_factory.save(tmp_path / "my-student", "llama", hidden=32, seed=1)
    code = code.replace('"./my-teacher"', repr(teacher)).replace('"./my-student"', repr(student))
    code = code.replace("max_steps=100", "max_steps=2, report_to='none', save_strategy='no'")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 2
    assert (tmp_path / "student-distilled" / "model.safetensors").exists()

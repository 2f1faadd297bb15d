"""The docstrings' `>>>` examples, run as doctests (`--doctest-modules` over svdkit/, see pyproject.toml).

Each example runs in a scratch folder that holds links to the repository's `data/` and `notebooks/`, so it reads
`data/example_0.png` as the docs show and writes its clips outside the checkout. An example that needs a bundled
model is skipped, saying so, when that model is missing; the few long ones carry the markers the tests use.
"""

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent

# Doctests (by name) that run for long: a whole notebook, or a sweep of 16 clips.
DOCTEST_MARKS = {
    "svdkit.headless": ("notebook",),
    "svdkit.sweep": ("slow",),
}

# What an example must mention to need a bundled model: (pattern, model folder under svdkit/toy, how to build it).
_NEEDS = (
    (re.compile(r"""load_pipeline\(\s*["']toy["']|MODEL_PATH|["']model["']:\s*["']toy["']|prompt_to_video\("""),
     "model", "python -m svdkit.toy.train"),
    (re.compile(r"""text_to_image\(|prompt_to_video\(|load_text_pipeline\("""),
     "text_model", "python -m svdkit.toy.train_text"),
)


def _is_doctest(item) -> bool:
    return type(item).__name__ == "DoctestItem"


def pytest_collection_modifyitems(config, items):
    toy = ROOT / "svdkit" / "toy"
    for item in items:
        if _is_doctest(item):
            for name in DOCTEST_MARKS.get(item.name, ()):
                item.add_marker(getattr(pytest.mark, name))
            source = "\n".join(example.source for example in item.dtest.examples)
            for pattern, folder, build in _NEEDS:
                if pattern.search(source) and not (toy / folder / "model_index.json").is_file():
                    item.add_marker(pytest.mark.skip(
                        reason=f"the bundled svdkit/toy/{folder} is missing (build it: {build})"))
                    break
        if item.get_closest_marker("notebook") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)  # so that -m "not slow" leaves them out too


@pytest.fixture(autouse=True)
def _doctest_folder(request):
    """Run each doctest in a scratch folder that sees the repository's data/ and notebooks/."""
    if _is_doctest(request.node):
        folder = request.getfixturevalue("tmp_path")
        for name in ("data", "notebooks"):
            (folder / name).symlink_to(ROOT / name, target_is_directory=True)
        request.getfixturevalue("monkeypatch").chdir(folder)

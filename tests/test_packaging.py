"""The product as users install it: a wheel built from the committed tree, installed outside the
checkout, loads every bundled model; the package list is complete; the modules form layers
without import circles."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_zoo_package_is_in_the_wheel_list():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "zoo").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "zoo.hub_cards" in listed


def _tracked_tree(destination: Path) -> Path:
    """The committed files as they are in the working tree (what a clean checkout builds)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def test_a_wheel_installed_outside_the_checkout_loads_every_bundled_model(tmp_path):
    tree = _tracked_tree(tmp_path / "tree")
    # packages that helpers are adding in this working tree but have not committed yet
    for init in (ROOT / "zoo").rglob("__init__.py"):
        if not (tree / init.relative_to(ROOT)).exists():
            shutil.copytree(init.parent, tree / init.parent.relative_to(ROOT), dirs_exist_ok=True)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("zoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tracked = {str(p.relative_to(tree)) for p in (tree / "hub_cards").rglob("*") if p.is_file()}
    packed = {name.removeprefix("zoo/") for name in names if name.startswith("zoo/hub_cards/")}
    assert packed == tracked, (sorted(packed ^ tracked))  # every committed card file, nothing else
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    script = (
        "import json, zoo, zoo.paths\n"
        "from zoo.hub import ModelLoadError\n"
        "report = {'cards': str(zoo.paths.CARDS_ROOT), 'loaded': [], 'refused': {}}\n"
        "for name in zoo.list_models():\n"
        "    try:\n"
        "        model = zoo.load(name)\n"
        "        report['loaded'].append([name, model.zoo_source])\n"
        "    except ModelLoadError as error:\n"
        "        report['refused'][name] = str(error)\n"
        "print(json.dumps(report))\n")
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["cards"].startswith(str(site)), report["cards"]
    bundled = {p.parent.name for p in (tree / "hub_cards").glob("*/model.safetensors")}
    from zoo.registry import entries

    registered_with_weights = {e.name for e in entries() if Path(e.card).name in bundled}
    loaded = {name for name, source in report["loaded"]}
    assert registered_with_weights <= loaded, report
    assert all("bundled copy" in source for name, source in report["loaded"])
    # weights converted from the authors' release are not in the wheel: a clear message says how to make them
    for name, message in report["refused"].items():
        assert "zoo convert" in message, (name, message)


def _imports(root: Path) -> dict[str, set[str]]:
    """Every zoo module's zoo imports, at module level and inside functions alike."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                if not base.startswith("zoo"):
                    continue
                targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                deps.update(targets or [base])
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name.startswith("zoo"))
        graph[name] = {_known(dep, modules) for dep in deps} - {name, None}
    return graph


def _known(name: str, modules) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    """Layers: paths/audio -> data, inference -> module (the contract) -> model_folder, registry ->
    models -> hub -> training, cards, CLI. A package's __init__ importing its own submodules is not
    a circle; a submodule importing its package's __init__ would be."""
    graph = _imports(ROOT / "zoo")
    # a package's __init__ re-exporting its submodules is the package itself, not a layer
    for name in graph:
        graph[name] = {d for d in graph[name] if not (name == d.rpartition(".")[0] and d.startswith(name + "."))}
    assert _cycles(graph) == []


def test_the_data_layer_and_the_contract_import_nothing_above_them():
    graph = _imports(ROOT / "zoo")

    def reach(start):
        seen, pending = set(), [start]
        while pending:
            for dep in graph.get(pending.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    pending.append(dep)
        return seen

    above_the_contract = {"zoo.hub", "zoo.models", "zoo.train", "zoo.cli"}
    assert not (reach("zoo.module") & above_the_contract), sorted(reach("zoo.module") & above_the_contract)
    for layer in [m for m in graph if m.startswith("zoo.data")]:  # the one-way flow: data knows no model
        above = above_the_contract | {"zoo.registry", "zoo.module"}
        assert not (reach(layer) & above), (layer, sorted(reach(layer) & above))

"""The pinned dependencies and the image: constraints.txt pins every dependency of
pyproject.toml (CI and the Dockerfile install with it), and the Dockerfile installs them in a
layer before the source is copied and runs as an unprivileged numeric user."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    extras = ("service", "bench", "export", "dev")
    specs = meta["dependencies"] + [s for e in extras for s in meta["optional-dependencies"][e]]
    for spec in specs:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name == "wedgenet":
            continue
        assert name in pins, f"{name} is not in constraints.txt: run .ci/constraints.py"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])


def test_ci_and_image_install_with_the_constraints() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip install .*-c constraints\.txt .*'\.\[dev\]'", ci)
    docker = (ROOT / "Dockerfile").read_text().splitlines()
    steps = [ln for ln in docker if re.match(r"^(FROM|COPY|RUN|USER|CMD)\b", ln)]
    copy_deps = next(i for i, s in enumerate(steps) if s.startswith("COPY pyproject.toml"))
    install = next(i for i, s in enumerate(steps) if s.startswith("RUN") and i > copy_deps)
    source = next(i for i, s in enumerate(steps) if s.startswith("COPY wedgenet"))
    assert "constraints.txt" in steps[copy_deps] and copy_deps < install < source
    text = "\n".join(docker)
    assert "-c constraints.txt -r /tmp/requirements.txt" in text
    assert "--no-deps -c constraints.txt ." in text
    user = [s for s in steps if s.startswith("USER")]
    assert user == ["USER 10001:10001"]
    assert steps.index(user[0]) < steps.index(next(s for s in steps if s.startswith("CMD")))

"""CDI spec files are host configuration, but a malformed or hostile one must not make
the daemon hang or fill its memory: YAML aliases that expand a small file into a huge
document are refused (security audit 2, row 46)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import ConfigError
from dockyard.executor.cdi import parse_spec


def _hook_spec(args: str) -> str:
    return (
        'cdiVersion: "0.6.0"\n'
        "kind: vendor.com/class\n"
        "devices:\n"
        "- name: dev\n"
        "  containerEdits:\n"
        "    hooks:\n"
        "    - hookName: createRuntime\n"
        "      path: /bin/true\n"
        f"      args: {args}\n"
    )


def test_yaml_aliases_cannot_expand_a_spec() -> None:
    # 1 MiB of text standing for 40 MiB of hook arguments: each step's config.json
    # would hold them all (a 16 MiB file could stand for terabytes)
    big = "x" * (1 << 20)
    text = _hook_spec(f'[&s "{big}", ' + ", ".join(["*s"] * 40) + "]")
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_spec(text, path=Path("/etc/cdi/bomb.yaml"), yaml=True)


def test_yaml_billion_laughs_is_refused_at_once() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    text = "\n".join(lines) + "\n"
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_spec(text, path=Path("/etc/cdi/laughs.yaml"), yaml=True)


def test_a_yaml_value_that_contains_itself_is_refused() -> None:
    text = _hook_spec("&s [*s]")
    with pytest.raises(ConfigError, match="contains itself"):
        parse_spec(text, path=Path("/etc/cdi/cycle.yaml"), yaml=True)


def test_moderate_aliases_still_parse() -> None:
    text = _hook_spec('[&s "--flag", *s, *s]')
    spec = parse_spec(text, path=Path("/etc/cdi/ok.yaml"), yaml=True)
    assert spec.devices[0].edits.hooks[0].args == ("--flag", "--flag", "--flag")

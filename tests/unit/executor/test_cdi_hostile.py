"""CDI spec files are host configuration, but a malformed or hostile one must not make
the daemon hang or fill its memory: YAML aliases that expand a small file into a huge
document are refused, and a spec with very many environment entries is applied in one
pass (security audit 2, rows 47-48)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import ConfigError
from dockyard.executor.cdi import ContainerEdits, apply_edits, parse_spec


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


class _Entry(str):
    """An environment entry that counts how often an entry's key is looked at."""

    looked_at = 0

    def partition(self, sep: str, /) -> tuple[str, str, str]:
        type(self).looked_at += 1
        return super().partition(sep)


def test_many_environment_entries_are_applied_in_one_pass() -> None:
    # a spec may list hundreds of thousands of entries (16 MiB of JSON): set one by
    # one, each rebuilding the whole environment, 20 000 took 14 s and 2 million hours
    count = 2000
    env = (*(_Entry(f"K{i}=v") for i in range(count)), _Entry("K0=last"))
    process_env = [_Entry(e) for e in ("PATH=/usr/bin", "HOME=/root", "K1=old")]
    oci: dict[str, Any] = {"process": {"env": process_env}}
    _Entry.looked_at = 0
    apply_edits(oci, [ContainerEdits(origin="vendor.com/class=dev", env=env)])
    assert _Entry.looked_at <= 2 * (count + 1 + len(process_env))  # not count x count
    result = oci["process"]["env"]
    assert result[:2] == ["PATH=/usr/bin", "HOME=/root"]  # untouched keys keep their place
    assert "K1=v" in result
    assert "K1=old" not in result
    assert len(result) == count + 2
    assert result[-1] == "K0=last"  # the last setting of a key wins and comes last


def test_a_large_json_environment_parses_and_applies() -> None:
    count = 20_000
    doc = {
        "cdiVersion": "0.6.0",
        "kind": "vendor.com/class",
        "devices": [{"name": "dev", "containerEdits": {"env": [f"K{i}=v" for i in range(count)]}}],
    }
    spec = parse_spec(json.dumps(doc), path=Path("/etc/cdi/env.json"))
    oci: dict[str, Any] = {}
    apply_edits(oci, [spec.devices[0].edits])
    assert len(oci["process"]["env"]) == count

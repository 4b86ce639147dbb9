"""The AWS shared config and credentials files, as the AWS SDK for Go v2 reads them.

``~/.aws/config`` (``$AWS_CONFIG_FILE``) names its profiles ``[default]`` and
``[profile NAME]``; ``~/.aws/credentials`` (``$AWS_SHARED_CREDENTIALS_FILE``) names them
``[NAME]``. A profile is the union of its sections in both files, the credentials
file's keys winning. Keys are case-insensitive; a missing file is an empty one; a file
that is not INI is an error naming its line (never the line's text: it may hold a
secret). ``$AWS_PROFILE`` (``$AWS_DEFAULT_PROFILE``) picks the profile, ``default``
otherwise.

Also the region (``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, the profile's ``region``) and a
service's endpoint override (``$AWS_ENDPOINT_URL_<SERVICE>``, ``$AWS_ENDPOINT_URL``, the
profile's ``endpoint_url``; none with ``$AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.core import ConfigError

__all__ = ["SharedConfig", "load_shared_config", "profile_name", "region_of", "service_endpoint"]

_NO_DEFAULTS = "\x00no-defaults"  # configparser's DEFAULT section would leak into all


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedConfig:
    """The profiles of both files (``repr`` shows their names only: values may be
    secrets)."""

    profiles: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    config_path: Path | None = None
    credentials_path: Path | None = None

    def profile(self, name: str) -> Mapping[str, str] | None:
        return self.profiles.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.profiles))


def _home(env: Mapping[str, str], home: Path | None) -> Path:
    if home is not None:
        return home
    text = env.get("HOME", "")
    return Path(text) if text else Path.home()


def _read(path: Path) -> dict[str, dict[str, str]] | None:
    """The sections of one INI file; ``None`` when there is no such file."""
    parser = configparser.ConfigParser(
        interpolation=None,
        strict=False,  # a section or key given twice: merged, the last value wins
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        default_section=_NO_DEFAULTS,
        empty_lines_in_values=False,
    )
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"AWS config {path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"AWS config {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"AWS config {path}: not UTF-8 text") from None
    except configparser.ParsingError as exc:
        lines = ", ".join(str(n) for n, _ in exc.errors[:5])
        raise ConfigError(f"AWS config {path}: line {lines} is not 'key = value'") from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"AWS config {path}: line {exc.lineno} is outside a [section]") from None
    except configparser.Error:
        raise ConfigError(f"AWS config {path}: not an INI file") from None
    return {
        name: {key: (value or "").strip() for key, value in parser.items(name, raw=True)}
        for name in parser.sections()
    }


def load_shared_config(
    env: Mapping[str, str] | None = None, home: Path | None = None
) -> SharedConfig:
    """Both files, as ``env`` (the process environment) names them."""
    env = os.environ if env is None else env
    config_text = env.get("AWS_CONFIG_FILE", "")
    creds_text = env.get("AWS_SHARED_CREDENTIALS_FILE", "")
    config_path = (
        Path(config_text).expanduser() if config_text else _home(env, home) / ".aws" / "config"
    )
    creds_path = (
        Path(creds_text).expanduser() if creds_text else _home(env, home) / ".aws" / "credentials"
    )
    profiles: dict[str, dict[str, str]] = {}
    config = _read(config_path) or {}
    # ``[default]`` and ``[profile default]`` both name the default profile (the latter
    # wins); any other section without the ``profile`` word is not a profile
    # (``[sso-session x]``, ``[services x]``)
    for section in sorted(config, key=lambda s: s.split()[0] == "profile"):
        words = section.split()
        if section.strip() == "default":
            name = "default"
        elif len(words) == 2 and words[0] == "profile":
            name = words[1]
        else:
            continue
        profiles.setdefault(name, {}).update(config[section])
    for section, values in (_read(creds_path) or {}).items():
        profiles.setdefault(section.strip(), {}).update(values)
    return SharedConfig(profiles=profiles, config_path=config_path, credentials_path=creds_path)


def profile_name(env: Mapping[str, str]) -> tuple[str, bool]:
    """``(name, named)``: the profile ``env`` picks and whether it named one (a named
    profile that does not exist is an error; a missing ``default`` is not)."""
    name = env.get("AWS_PROFILE", "") or env.get("AWS_DEFAULT_PROFILE", "")
    return (name, True) if name else ("default", False)


def region_of(env: Mapping[str, str], profile: Mapping[str, str] | None) -> str:
    """The region the SDK's configuration takes: ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``,
    the profile's ``region``; ``""`` when none is set."""
    return (
        env.get("AWS_REGION", "")
        or env.get("AWS_DEFAULT_REGION", "")
        or (profile or {}).get("region", "")
    ).strip()


def service_endpoint(
    env: Mapping[str, str], service: str, profile: Mapping[str, str] | None
) -> str:
    """A configured endpoint for ``service`` (``STS``, ``S3``...), ``""`` for the
    default one."""
    ignore = env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "") or (profile or {}).get(
        "ignore_configured_endpoint_urls", ""
    )
    if ignore.strip().lower() == "true":
        return ""
    return (
        env.get(f"AWS_ENDPOINT_URL_{service.upper()}", "")
        or env.get("AWS_ENDPOINT_URL", "")
        or (profile or {}).get("endpoint_url", "")
    ).strip()

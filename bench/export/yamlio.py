"""YAML output that reads back as written.

PyYAML (YAML 1.1) reads `1e-07` as a string: a float needs a dot in its mantissa, so every float
is written like `1.0e-07`, and that is what LiteLLM's config loader gets back as a number.
"""
from __future__ import annotations

import math

import yaml


class _Dumper(yaml.SafeDumper):
    """Safe dumper with YAML-1.1-proof floats and no anchors/aliases (a config stays flat)."""

    def ignore_aliases(self, data) -> bool:  # noqa: D401 - PyYAML's hook
        return True


def float_text(value: float) -> str:
    """'1.0e-07', '0.25', '3.0', '.inf' - always a float to a YAML 1.1 reader."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(float(value))
    if "e" in text:
        mant, exp = text.split("e")
        if "." not in mant:
            mant += ".0"
        text = f"{mant}e{exp if exp.startswith(('-', '+')) else '+' + exp}"
    elif "." not in text:
        text += ".0"
    return text


def _float(dumper: yaml.SafeDumper, value: float):
    return dumper.represent_scalar("tag:yaml.org,2002:float", float_text(value))


_Dumper.add_representer(float, _float)


def dump(doc, header: str = "") -> str:
    """YAML text of doc, with an optional comment header (each line prefixed by '# ')."""
    lead = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines()) if header else ""
    return lead + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)

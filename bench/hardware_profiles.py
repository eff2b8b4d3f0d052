"""Hardware profiles: a machine's price and capabilities, from profiles/hardware/ or inline."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmbench.errors import BadInput


class HardwareProfile(BaseModel):
    """A priced machine. Prices carry their date and source, since they move."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str = "cpu"
    description: str = ""
    devices: int = Field(1, ge=1)
    usd_per_hour: float = Field(ge=0)
    memory_gb: float | None = None
    memory_bandwidth_gbs: float | None = None
    peak_bf16_tflops: float | None = None
    peak_int8_tops: float | None = None
    price_date: str | None = None
    price_source: str | None = None

    @property
    def usd_per_second(self) -> float:
        return self.usd_per_hour * self.devices / 3600.0


def _folder():
    return resources.files("llmbench.profiles") / "hardware"


def hardware_names() -> list[str]:
    """Names of the shipped hardware profiles."""
    return sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".yaml"))


def load_hardware(spec) -> HardwareProfile:
    """A profile by name, from a YAML path, or from an inline {name, usd_per_hour, devices}."""
    if not isinstance(spec, str):
        return HardwareProfile(**spec.model_dump())
    path = Path(spec)
    if spec.endswith((".yaml", ".yml")) and path.is_file():
        text, where = path.read_text(), spec
    else:
        entry = _folder() / f"{spec}.yaml"
        if not entry.is_file():
            raise BadInput(f"hardware: unknown profile {spec!r} (shipped: {', '.join(hardware_names())}; or give {{name, usd_per_hour}})")
        text, where = entry.read_text(), f"profiles/hardware/{spec}.yaml"
    try:
        return HardwareProfile(**yaml.safe_load(text))
    except (ValidationError, TypeError, yaml.YAMLError) as exc:
        raise BadInput(f"{where}: not a valid hardware profile ({str(exc).splitlines()[0]})") from None

"""Hardware profiles: a machine's price and capabilities, from profiles/hardware/ or inline."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmbench.errors import BadInput
from llmbench.files import read_input_text
from llmbench.yamlsafe import load_yaml


class HardwareProfile(BaseModel):
    """A priced machine. Prices carry their date and source, since they move."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `usd_per_hour: .inf` is not a price

    name: str
    kind: str = "cpu"
    description: str = ""
    devices: int = Field(1, ge=1)
    usd_per_hour: float = Field(ge=0, le=1e6)
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
    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        text, where = read_input_text(path, "hardware profile"), spec
    else:
        entry = _folder() / f"{spec}.yaml"
        if not entry.is_file():
            raise BadInput(f"hardware: unknown profile {spec!r} (shipped: {', '.join(hardware_names())}; or give {{name, usd_per_hour}})")
        text, where = entry.read_text(), f"profiles/hardware/{spec}.yaml"
    data = load_yaml(text, where)
    if not isinstance(data, dict):
        raise BadInput(f"{where}: a hardware profile is a mapping of keys, got {type(data).__name__}")
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as exc:
        # The key and the problem only: the offending value itself may be huge.
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise BadInput(f"{where}: not a valid hardware profile: {key}: {err['msg'][:200]}") from None

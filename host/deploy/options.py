"""What `tinyear deploy` was asked to do, and the error a stopped deploy raises. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tinyear.device.errors import TinyearError

from .ssh import Target


@dataclass
class DeployOptions:
    """Everything `tinyear deploy` was asked to do (see host/commands/deploy.py for the flags)."""

    bundle: Path
    target: Target
    port: int | None = None
    identity: str | None = None
    ssh_config: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    python: str = "python3"
    runtime: str | None = None
    wheelhouse: Path | None = None
    service: bool = False
    bundle_only: bool = False
    tolerance: float | None = None


class DeployError(TinyearError):
    """A deploy that stopped; `steps` holds what ran (for --json)."""

    def __init__(self, message: str, steps: list[dict] | None = None):
        super().__init__(message)
        self.steps = steps or []

"""Named experiments. Each module has `NAME`, `DESCRIPTION`, a `Config` dataclass (with
`Config.quick(seed)`), `run(config, *, progress) -> Report` and `headline(metrics)`."""

from . import deep_linear, discrete_gd, kernel

EXPERIMENTS = {m.NAME: m for m in (deep_linear, kernel, discrete_gd)}

__all__ = ["EXPERIMENTS", "deep_linear", "discrete_gd", "kernel"]

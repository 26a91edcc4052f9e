"""Where a run computes, decided once at the entry point and passed down.

    rt = Runtime.current()                 # joins the process group under torchrun / accelerate launch
    device = resolve_device(cfg.gnn.device, "gnn.device")
    if rt.main: ...                        # rank 0 writes files
    rt.main_first(build_cache)             # rank 0 builds a cache, then the others load it

Components (models, collators) never ask where they run: they get tensors on a device.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from linklm.errors import UserError

T = TypeVar("T")


def resolve_device(name: str, key: str):
    """The torch device for a config value `auto`, `cpu`, `cuda` or `cuda:N` (config key `key`)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"config key {key} is {name!r} but no CUDA device is available")
    return torch.device(name)


def precision(device) -> str:
    """bf16 on a GPU that has it, fp16 on an older GPU, fp32 on a CPU (autocast in training)."""
    import torch

    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@dataclass(frozen=True)
class Runtime:
    """This process's rank and the world size: (0, 1) outside torchrun / accelerate launch."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    @functools.cache
    def current() -> Runtime:
        """Read once per process: under a launcher, joins the process group it set up."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return Runtime()
        import torch

        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return Runtime(torch.distributed.get_rank(), world)

    def barrier(self) -> None:
        if self.world > 1:
            import torch

            torch.distributed.barrier()

    def main_first(self, stage: Callable[[], T]) -> T:
        """Run `stage` on rank 0 first (it builds the caches), then on the other ranks (which load them)."""
        if not self.main:
            self.barrier()
        result = stage()
        if self.main:
            self.barrier()
        return result

    def say(self, line: str) -> None:
        if self.main:
            print(line, flush=True)

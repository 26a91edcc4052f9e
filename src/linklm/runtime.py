"""Where a run computes, decided once at the entry point and passed down.

    rt = Runtime.current()                 # joins the process group under torchrun / accelerate launch
    device = resolve_device(cfg.gnn.device, "gnn.device")
    precision = resolve_precision(cfg.llm.precision, device, "llm.precision")
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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): there bf16 matmuls run several
    times as fast as fp32 (README "Precision"); elsewhere oneDNN emulates them, slower than fp32."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str, device, key: str) -> str:
    """fp32, bf16 or fp16 for config value `requested` (auto, fp32, bf16, fp16) on `device`.

    auto: bf16 on a CPU with native bf16 and on a GPU that has it, fp16 on an older GPU, fp32
    otherwise. A precision the device cannot train in is a UserError naming config key `key`."""
    import torch

    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if bf16 else "fp16"
        if requested == "bf16" and not bf16:
            raise UserError(f"config key {key} is bf16 but this GPU has no bf16; use fp16, fp32 or auto")
        return requested
    if requested == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
    if requested == "fp16":
        raise UserError(f"config key {key} is fp16, which trains on a GPU only; on the CPU use bf16, fp32 or auto")
    if requested == "bf16" and not (device.type == "cpu" and cpu_has_bf16()):
        raise UserError(f"config key {key} is bf16 but this CPU has no native bf16 (AVX-512 BF16 or AMX); "
                        "use fp32 or auto")  # fmt: skip
    return requested


def torch_dtype(precision: str):
    """The torch dtype of a resolved precision (fp32, bf16, fp16)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device, precision: str):
    """The autocast context of `precision` on `device` (fp32: a no-op)."""
    import torch

    return torch.autocast(device.type, dtype=torch_dtype(precision), enabled=precision != "fp32")


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

    def from_main(self, value: T) -> T:
        """`value` as rank 0 has it, on every rank (one broadcast): for decisions every rank must
        take together, such as a checkpoint by rank 0's clock."""
        if self.world == 1:
            return value
        import torch

        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

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

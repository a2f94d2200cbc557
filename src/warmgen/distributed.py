"""Multiple processes (`accelerate launch` on GPUs, torchrun on CPU): who I am, and the collectives the loop needs.

The model is not wrapped in DistributedDataParallel: warmup steps call `generate`, the encoder
and the full model separately, which a DDP wrapper does not allow. Instead each process computes
its shard's loss divided by the global token count and gradients are summed across processes
after backward, which is the same gradient as one process on the whole global batch.
With one process every function here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .config import ConfigError


class Processes:
    def __init__(self):
        from accelerate import PartialState

        # Joins the process group set up by accelerate launch / torchrun; without CUDA, accelerate
        # only forms a CPU (gloo) group when told it is on CPU.
        state = PartialState(cpu=not torch.cuda.is_available())
        self.rank, self.world, self.device = state.process_index, state.num_processes, state.device
        self.is_main = state.is_main_process

    def sum(self, value: float | torch.Tensor) -> torch.Tensor:
        tensor = torch.as_tensor(value, dtype=torch.float64, device=self.device).clone()
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def sum_gradients(self, model) -> None:
        if self.world > 1:
            for parameter in model.parameters():
                if parameter.requires_grad:
                    if parameter.grad is None:  # every process must reduce the same tensors
                        parameter.grad = torch.zeros_like(parameter)
                    dist.all_reduce(parameter.grad)

    def mean_stats(self, stats: dict[str, float]) -> dict[str, float]:
        if self.world == 1 or not stats:
            return stats
        keys = sorted(stats)
        values = self.sum(torch.tensor([stats[k] for k in keys], dtype=torch.float64)) / self.world
        return dict(zip(keys, values.tolist()))

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def finish(self) -> None:
        """Wait for every process, then leave the group (before the main process evaluates alone)."""
        self.barrier()
        leave_process_group()


def leave_process_group() -> None:
    # A process that exits with its gloo group still alive can abort at interpreter shutdown
    # ("terminate called without an active exception"), failing the launch after training succeeded.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_launch(mixed_precision: str) -> None:
    """Refuse `accelerate launch` settings this loop does not implement rather than ignore them."""
    sharded = [name for name, flag in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
               if os.environ.get(flag, "").lower() == "true"]
    if sharded:
        raise ConfigError(
            f"the accelerate config asks for {sharded[0]}, which warmgen does not support yet (each process holds the "
            "whole model and gradients are all-reduced): launch with configs/accelerate/multi_gpu.yaml, and fit memory "
            "with model.lora_rank, train.mixed_precision bf16 and a smaller train.batch_size")
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched not in ("no", mixed_precision):
        raise ConfigError(
            f"the accelerate config sets mixed_precision {launched!r} but train.mixed_precision is {mixed_precision!r}: "
            "warmgen follows train.mixed_precision (no | bf16); set it there and keep mixed_precision 'no' in the accelerate config")

"""Multiple processes (`accelerate launch` on GPUs, torchrun on CPU): who I am, and the collectives the loop needs.

The model is not wrapped in DistributedDataParallel: warmup steps call `generate`, the encoder
and the full model separately, which a DDP wrapper does not allow. Instead each process computes
its shard's loss divided by the global token count and gradients are summed across processes
after backward, which is the same gradient as one process on the whole global batch.

With an accelerate FSDP config, decoder-only models are sharded with FSDP2 (`fully_shard` on each
transformer block and the whole model): each process holds 1/N of the weights, gradients and
optimizer state, and every forward pass all-gathers the block it runs. So every process must run
the same forward passes: generation keeps stepping until all processes finish (transformers'
synced_gpus), and evaluation runs on all processes. Checkpoints gather the full weights and
optimizer state, so they load unsharded.
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
        self.sharded = False

    def shard(self, model) -> None:
        """FSDP2 when the accelerate config asks for FSDP (see check_launch), in place; else nothing."""
        if not _launch_flag("ACCELERATE_USE_FSDP") or self.world == 1:
            return
        from accelerate.utils import FullyShardedDataParallelPlugin
        from torch.distributed.fsdp import fully_shard

        if model.config.is_encoder_decoder:
            raise ConfigError(
                "FSDP is supported for decoder-only models; encoder-decoder models call their encoder outside the sharded "
                "forward pass. Launch with configs/accelerate/multi_gpu.yaml")
        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* settings accelerate launch exported
        # The root is the transformers model, also under a LoRA wrapper: `generate` calls its forward
        # directly, and only the root's forward gathers the weights outside the blocks (embeddings, head).
        root = model.get_base_model() if hasattr(model, "get_base_model") else model
        blocks = set(root._no_split_modules or ())  # the transformer block classes, e.g. LlamaDecoderLayer
        for module in root.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, reshard_after_forward=plugin.reshard_after_forward)
        fully_shard(root, reshard_after_forward=plugin.reshard_after_forward)
        root._is_fsdp_managed_module = True  # transformers' generate then keeps all processes stepping together
        self.sharded = True

    @property
    def evaluates(self) -> bool:
        """Whether this process takes part in evaluation: a sharded model needs every process for each forward pass."""
        return self.is_main or self.sharded

    def sum(self, value: float | torch.Tensor) -> torch.Tensor:
        tensor = torch.as_tensor(value, dtype=torch.float64, device=self.device).clone()
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def sum_gradients(self, model) -> None:
        if self.sharded:  # FSDP reduce-scattered them already, as a mean (gloo cannot sum with a factor of 1)
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.grad.mul_(self.world)
        elif self.world > 1:
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

    def clip_gradients(self, model, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return (norm.full_tensor() if self.sharded else norm).item()  # sharded: the norm over all shards

    def full_state_dict(self, model) -> dict | None:
        """The unsharded weights on the main process (every process must call it), or None: use the model's own."""
        if not self.sharded:
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        # Gathered copies of a tied parameter (embedding and head) are separate tensors; share them again so
        # save_pretrained writes the parameter once, as for an unsharded model.
        names = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            names.setdefault(id(parameter), []).append(name)
        for first, *aliases in names.values():
            for alias in aliases:
                if first in weights:
                    weights[alias] = weights[first]
        return weights

    def optimizer_state(self, model, optimizer) -> dict:
        """The whole optimizer state on the main process (every process must call it)."""
        if not self.sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, model, optimizer, state: dict) -> None:
        if not self.sharded:
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))

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


def _launch_flag(name: str) -> bool:
    """A true/false setting `accelerate launch` exported from its config file."""
    return os.environ.get(name, "").lower() == "true"


def check_launch(config) -> None:
    """Refuse `accelerate launch` settings this loop does not implement rather than ignore them."""
    if _launch_flag("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError(
            "the accelerate config asks for DeepSpeed, which warmgen does not support: launch with "
            "configs/accelerate/fsdp.yaml (sharded weights, gradients and optimizer state) or configs/accelerate/multi_gpu.yaml")
    if _launch_flag("ACCELERATE_USE_FSDP"):
        version = os.environ.get("FSDP_VERSION", "1")
        unsupported = [name for name, flag in (("fsdp_version 1", version != "2"),
                                               ("fsdp_offload_params", _launch_flag("FSDP_OFFLOAD_PARAMS")),
                                               ("fsdp_activation_checkpointing", _launch_flag("FSDP_ACTIVATION_CHECKPOINTING")))
                       if flag]
        if unsupported:
            raise ConfigError(f"the accelerate FSDP config sets {unsupported[0]}, which warmgen does not support: start from "
                              "configs/accelerate/fsdp.yaml (fsdp_version 2, no offload, no activation checkpointing)")
        if config.method == "warmup" and config.warmup.keep_best_warmup:
            raise ConfigError("warmup.keep_best_warmup with FSDP: processes would sample different numbers of times, and "
                              "sharded forward passes must run on all processes together; set warmup.keep_best_warmup false")
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched not in ("no", config.train.mixed_precision):
        raise ConfigError(
            f"the accelerate config sets mixed_precision {launched!r} but train.mixed_precision is {config.train.mixed_precision!r}: "
            "warmgen follows train.mixed_precision (no | bf16); set it there and keep mixed_precision 'no' in the accelerate config")

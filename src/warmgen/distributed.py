"""Multiple processes (`accelerate launch` on GPUs, torchrun on CPU): who I am, and the collectives the loop needs.

The model is not wrapped in DistributedDataParallel: warmup steps call `generate`, the encoder
and the full model separately, which a DDP wrapper does not allow. Instead each process computes
its shard's loss divided by the global token count and gradients are summed across processes
after backward, which is the same gradient as one process on the whole global batch.

With an accelerate FSDP config, the model is sharded with FSDP2 (`fully_shard` on each
transformer block and the whole model): each process holds 1/N of the weights, gradients and
optimizer state, and every forward pass all-gathers the block it runs. So every process must run
the same forward passes: generation keeps stepping until all processes finish (transformers'
synced_gpus), and evaluation runs on all processes. Checkpoints gather the full weights and
optimizer state, so they load unsharded.

With an accelerate DeepSpeed config, DeepSpeed's engine owns the optimizer: each process keeps
1/N of the optimizer state (stage 1), of the gradients (stage 2) and of the weights (stage 3, which
gathers each layer in hooks around its forward and backward, so it runs collectively like FSDP).
Backward reduce-scatters the gradients, and the engine clips, steps and skips steps whose gradients
are not finite. The loop still calls the model itself and decides where optimizer steps fall
(DeepSpeed's managed_gradient_accumulation off). Checkpoints hold the gathered weights and every
process's optimizer partition, so a run resumes with as many processes.
With one process and no DeepSpeed every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings

import torch
import torch.distributed as dist

from .errors import ConfigError
from .methods import learns_warmups
from .models import base_model


class Processes:
    def __init__(self):
        from accelerate import PartialState

        # Joins the process group set up by accelerate launch / torchrun; without CUDA, accelerate
        # only forms a CPU (gloo) group when told it is on CPU.
        state = PartialState(cpu=not torch.cuda.is_available())
        self.rank, self.world, self.device = state.process_index, state.num_processes, state.device
        self.is_main = state.is_main_process
        self.sharded = False
        self.engine = None  # DeepSpeed's, when the accelerate config asks for DeepSpeed
        self.autocast_dtype = None  # train.mixed_precision's, set by prepare_optimizer
        self.scaler = None  # fp16's loss scaler

    def prepare_optimizer(self, model, optimizer, scheduler, train) -> None:
        """Hand the optimizer and scheduler to DeepSpeed ZeRO when the accelerate config asks for it (see check_launch).
        Under fp16 autocast, a loss scaler: float16 gradients would otherwise underflow to 0, or overflow."""
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train.mixed_precision)
        if not _launch_flag("ACCELERATE_USE_DEEPSPEED"):
            # Under FSDP each process checks only its shard for an overflow; the check runs on DTensors, which
            # reduce the found-overflow flag over the processes, so all keep one scale (tests/test_distributed.py).
            self.scaler = torch.amp.GradScaler(self.device.type) if train.mixed_precision == "fp16" else None
            return
        import deepspeed

        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=deepspeed_config(train, self.world), dist_init_required=False)
        if self.engine.zero_optimization_partition_weights() and self.world > 1:  # ZeRO-3: every forward pass is collective
            root = base_model(model)
            root._is_fsdp_managed_module = True  # transformers' generate then keeps all processes stepping together
            self.sharded = True

    def autocast(self):
        """The context of the training forward passes: train.mixed_precision's autocast, or none."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        if self.engine is None:
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
            return
        # engine.forward would start DeepSpeed's backward bookkeeping from a hook on its output; the loop calls
        # the model itself (generate, encoder, prefix and continuations), so it is started here.
        self.engine.optimizer.clear_backward_seen_flag()
        self.engine._backward_prologue()
        # DeepSpeed averages gradients over processes; the loss is already this process's share of the global sum.
        self.engine.backward(loss * self.world, scale_wrt_gas=False)

    def optimizer_step(self, model, optimizer, scheduler, max_norm: float, skip: bool) -> tuple[float, str]:
        """Synchronise and clip gradients, then step: (gradient norm, `stepped`, `skipped` or `rescaled`).

        A step is skipped (weights, optimizer and schedule untouched) when asked or when the
        gradient is not finite; gradients are cleared either way. `rescaled`: skipped because the
        fp16 loss scaler's scale overflowed the gradient of a finite loss; the scale is now halved.
        """
        if self.engine is not None:  # a NaN/inf loss left non-finite gradients, which DeepSpeed skips on its own
            self.engine.step()
            return float(self.engine.get_global_grad_norm()), "stepped" if self.engine.was_step_applied() else "skipped"
        if not skip or self.scaler is not None:  # under loss scaling every process must find the same overflow
            self.sum_gradients(model)
        if self.scaler is not None:
            with warnings.catch_warnings():  # under FSDP the overflow flag meets DTensor gradients: replicated, as meant
                warnings.filterwarnings("ignore", "Found a non-scalar tensor with numel=1")
                self.scaler.unscale_(optimizer)  # clipping and the logged norm see the true gradient
        norm = self.clip_gradients(model, max_norm)
        stepped = not skip and math.isfinite(norm)
        if stepped:
            if self.scaler is not None:
                self.scaler.step(optimizer)  # steps: the finite norm has ruled out an overflow
            else:
                optimizer.step()
            scheduler.step()
        rescaled = not stepped and not skip and self.scaler is not None and self.scaler.get_scale() >= 2
        if self.scaler is not None:
            self.scaler.update()  # halved after an overflow, doubled after 2,000 steps without one
        optimizer.zero_grad(set_to_none=True)
        return norm, "stepped" if stepped else "rescaled" if rescaled else "skipped"

    def loss_scale(self) -> dict[str, float]:
        """fp16's loss scale for the training log (`loss_scale`), or nothing."""
        return {"loss_scale": self.scaler.get_scale()} if self.scaler is not None else {}

    def loss_scaler_state(self) -> dict | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_loss_scaler(self, state: dict | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)

    def shard(self, model) -> None:
        """FSDP2 when the accelerate config asks for FSDP (see check_launch), in place; else nothing."""
        if not _launch_flag("ACCELERATE_USE_FSDP") or self.world == 1:
            return
        from accelerate.utils import FullyShardedDataParallelPlugin
        from torch.distributed.fsdp import fully_shard

        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* settings accelerate launch exported
        # The root is the transformers model, also under a LoRA wrapper: `generate` calls its forward
        # directly, and only the root's forward gathers the weights outside the blocks (embeddings, head).
        root = base_model(model)
        blocks = set(root._no_split_modules or ())  # the transformer block classes, e.g. LlamaDecoderLayer
        for module in root.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, reshard_after_forward=plugin.reshard_after_forward)
        fully_shard(root, reshard_after_forward=plugin.reshard_after_forward)
        if root.config.is_encoder_decoder:
            # `generate` calls the encoder itself, outside the root's forward: gather the root's weights (the
            # embedding the encoder shares) first. Training's scoring runs the encoder within the forward (layout.py).
            root.get_encoder().register_forward_pre_hook(lambda *_: _gather_root(root))
        root._is_fsdp_managed_module = True  # transformers' generate then keeps all processes stepping together
        self.sharded = True

    @property
    def evaluates(self) -> bool:
        """Whether this process takes part in evaluation: a sharded model needs every process for each forward pass."""
        return self.is_main or self.sharded

    def sum(self, value: float | list[float] | torch.Tensor) -> torch.Tensor:
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

    def gather_to_main(self, obj) -> list | None:
        """Every process's `obj` on the main process only (None elsewhere): a partition each, not N full copies."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def clip_gradients(self, model, max_norm: float) -> float:
        """Clip to `max_norm` (0 = no clipping, as in transformers); the global norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else math.inf)
        return (norm.full_tensor() if self.sharded else norm).item()  # type: ignore[attr-defined]  # sharded: a DTensor, over all shards

    def full_state_dict(self, model) -> dict | None:
        """The unsharded weights on the main process (every process must call it), or None: use the model's own."""
        if not self.sharded:
            return None
        if self.engine is not None:  # ZeRO-3; keeps tied parameters shared
            return self.engine._zero3_consolidated_16bit_state_dict()  # despite the name, in the weights' own dtype
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        # Gathered copies of a tied parameter (embedding and head) are separate tensors; share them again so
        # save_pretrained writes the parameter once, as for an unsharded model.
        names: dict[int, list[str]] = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            names.setdefault(id(parameter), []).append(name)
        for first, *aliases in names.values():
            for alias in aliases:
                if first in weights:
                    weights[alias] = weights[first]
        return weights

    def optimizer_state(self, model, optimizer) -> dict | list | None:
        """The whole optimizer state on the main process (every process must call it); DeepSpeed's is one partition per process."""
        if self.engine is not None:
            return self.gather_to_main(self.engine.optimizer.state_dict())
        if not self.sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, model, optimizer, state: dict | list) -> None:
        if self.engine is not None:
            if not isinstance(state, list):
                raise ConfigError("this checkpoint was not saved under DeepSpeed; resume it with the accelerate config that wrote it")
            self.engine.optimizer.load_state_dict(state)  # each process takes its own partition
            return
        if isinstance(state, list):
            raise ConfigError("this checkpoint was saved under DeepSpeed; resume it with the same accelerate DeepSpeed config")
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


def _gather_root(root) -> None:
    # FSDP2 takes the first sharded module to run forward as the root, so it must be told first when the encoder runs
    # before the model's forward ever has (generation's first step); a no-op once the root is known.
    root._get_fsdp_state()._lazy_init()
    root.unshard()


def _launch_flag(name: str) -> bool:
    """A true/false setting `accelerate launch` exported from its config file."""
    return os.environ.get(name, "").lower() == "true"


def deepspeed_config(train, world: int) -> dict:
    """DeepSpeed's config: the accelerate config's ZeRO settings, with the batch, accumulation and clipping of the run config."""
    try:
        import deepspeed  # noqa: F401  (accelerate's plugin needs it too)
    except ImportError:
        raise ConfigError("the accelerate config asks for DeepSpeed, which is not installed: "
                          "pip install --no-build-isolation 'deepspeed>=0.19.8,<0.20' (after torch)") from None
    from accelerate.utils import DeepSpeedPlugin

    settings = dict(DeepSpeedPlugin().deepspeed_config)  # accelerate launch's deepspeed_config, or its deepspeed_config_file
    zero = settings.get("zero_optimization", {})
    if int(zero.get("stage", 0)) not in (1, 2, 3):
        raise ConfigError(f"the accelerate DeepSpeed config sets zero_stage {zero.get('stage', 0)}; warmgen runs ZeRO "
                          "stages 1 to 3 (configs/accelerate/deepspeed_zero2.yaml, deepspeed_zero3.yaml)")
    offloaded = [side for side in ("offload_optimizer", "offload_param") if (zero.get(side) or {}).get("device") not in (None, "none")]
    owned = [key for key in ("optimizer", "scheduler") if key in settings]
    precision = [key for key in ("fp16", "bf16") if (settings.get(key) or {}).get("enabled") not in (None, False, "auto")]
    if offloaded or owned or precision:
        raise ConfigError(
            f"the accelerate DeepSpeed config sets {(offloaded + owned + precision)[0]}, which warmgen does not support: start "
            "from configs/accelerate/deepspeed_zero2.yaml or deepspeed_zero3.yaml (no offload; the optimizer and schedule come from the run config's "
            "train section, and mixed precision from train.mixed_precision)")
    # accelerate writes gradient_accumulation_steps 1 when its config leaves it out, so 1 means "not set" there.
    for key, name, value, unset in (("gradient_accumulation_steps", "train.gradient_accumulation_steps", train.gradient_accumulation_steps, 1),
                                    ("gradient_clipping", "train.max_grad_norm", train.max_grad_norm, "auto")):
        if settings.get(key, "auto") not in ("auto", unset, value):
            raise ConfigError(f"the accelerate DeepSpeed config sets {key} {settings[key]} but {name} is {value}: "
                              f"warmgen follows {name}; set it there and leave {key} out of (or 'auto' in) the DeepSpeed config")
    # A DeepSpeed config file written for transformers' Trainer may leave sizes 'auto' for it to fill: use DeepSpeed's defaults.
    settings["zero_optimization"] = {key: value for key, value in zero.items() if value != "auto"}
    return {**settings, "train_micro_batch_size_per_gpu": train.batch_size,
            "gradient_accumulation_steps": train.gradient_accumulation_steps,
            "train_batch_size": train.batch_size * world * train.gradient_accumulation_steps,
            "gradient_clipping": train.max_grad_norm, "steps_per_print": 2**31,
            # The loop decides where optimizer steps fall (an epoch's last, shorter accumulation too).
            "managed_gradient_accumulation": False}


def check_launch(config) -> None:
    """Refuse `accelerate launch` settings this loop does not implement rather than ignore them."""
    shards_weights = None  # which launch mode makes every forward pass collective
    if _launch_flag("ACCELERATE_USE_DEEPSPEED"):
        settings = deepspeed_config(config.train, world=1)  # raises on settings warmgen does not implement
        if int(settings.get("zero_optimization", {}).get("stage", 0)) == 3:
            shards_weights = "DeepSpeed ZeRO-3"
    if _launch_flag("ACCELERATE_USE_FSDP"):
        version = os.environ.get("FSDP_VERSION", "1")
        unsupported = [name for name, flag in (("fsdp_version 1", version != "2"),
                                               ("fsdp_offload_params", _launch_flag("FSDP_OFFLOAD_PARAMS")),
                                               ("fsdp_activation_checkpointing", _launch_flag("FSDP_ACTIVATION_CHECKPOINTING")))
                       if flag]
        if unsupported:
            raise ConfigError(f"the accelerate FSDP config sets {unsupported[0]}, which warmgen does not support: start from "
                              "configs/accelerate/fsdp.yaml (fsdp_version 2, no offload, no activation checkpointing)")
        shards_weights = "FSDP"
    if shards_weights and learns_warmups(config) and config.warmup.keep_best_warmup:
        raise ConfigError(f"warmup.keep_best_warmup with {shards_weights}: processes would sample different numbers of times, and "
                          "sharded forward passes must run on all processes together; set warmup.keep_best_warmup false")
    if config.train.mixed_precision == "fp16" and _launch_flag("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError("train.mixed_precision fp16 with DeepSpeed: warmgen's loss scaler does not run on DeepSpeed's optimizer; "
                          "use bf16 there, or FSDP (configs/accelerate/fsdp.yaml) or plain data parallelism (multi_gpu.yaml)")
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched not in ("no", config.train.mixed_precision):
        raise ConfigError(
            f"the accelerate config sets mixed_precision {launched!r} but train.mixed_precision is {config.train.mixed_precision!r}: "
            "warmgen follows train.mixed_precision (no | bf16 | fp16); set it there and keep mixed_precision 'no' in the accelerate config")

"""A whole training step (augmentation, forward, loss, backward, optimizer update) captured once in a CUDA
graph and replayed per batch, so the host launches one graph instead of hundreds of kernels.

On a GPU the tutorial networks' step is bound by the host: Python, Lightning's hooks and kernel launches
(about 4 ms a step on an H100 for well under a millisecond of GPU work). A replay copies the batch into the
graph's static input tensors and launches the recorded kernels; nothing waits on the host.

What stays correct:
- every batch of the epoch's shuffle runs; one of another size (the last, partial one) runs the same step
  uncaptured, so nothing is dropped or padded;
- per-sample augmentation draws from the default CUDA generator, which graph replays advance (it is
  seeded by ``seed`` and saved in checkpoints with the other RNG states);
- the learning rate (and Adam's beta1 under a one-cycle schedule) lives in device tensors the schedule
  updates in place, so the replayed update uses the current values;
- the warm-up steps that CUDA graphs need before capture are undone: weights, batch-norm statistics,
  optimizer state and the RNG are put back, so the run trains exactly the steps it reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

WARMUP_STEPS = 3  # on a side stream, as torch.cuda.graphs requires: cuDNN/cuBLAS pick their kernels


def capturable(optimizer: torch.optim.Optimizer, device: torch.device, tensor_betas: bool) -> None:
    """Make ``optimizer`` replayable: capturable update (step counts on the device, no host reads), the
    learning rate (and beta1 when a schedule cycles it) as device tensors a schedule updates in place."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
        if group.get("fused"):
            group["fused"] = False  # the multi-tensor capturable update instead
            group["foreach"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
        if tensor_betas and "betas" in group and not isinstance(group["betas"][0], torch.Tensor):
            group["betas"] = tuple(torch.tensor(float(b), device=device) for b in group["betas"])
    for state in optimizer.state.values():  # a checkpoint written uncaptured keeps its step count on the CPU
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = state["step"].to(device)


def capture_step(module: Any, trainer: Any) -> GraphedTrainingStep:
    """``module``'s training step on the DataModule's batches, captured on the module's CUDA device."""
    device, datamodule = module.device, trainer.datamodule
    optimizer = module.optimizers(use_pl_optimizer=False)
    cycles_beta = any(getattr(c.scheduler, "cycle_momentum", False) and getattr(c.scheduler, "use_beta1", False)
                      for c in trainer.lr_scheduler_configs)
    capturable(optimizer, device, tensor_betas=cycles_beta)
    generator = torch.cuda.default_generators[device.index or 0]  # graph-safe: each replay advances it

    def loss_fn(batch):
        x, y = datamodule.prepare_batch(batch, train=True, generator=generator)
        with trainer.precision_plugin.forward_context():
            return module.training_loss(x, y)

    images, labels = datamodule.train_set
    size = datamodule.hparams.batch_size
    example = (images[:size].to(device), labels[:size].to(device))
    return GraphedTrainingStep(module.net, [module.train_correct, module.train_seen], optimizer, loss_fn, example)


class GraphedTrainingStep:
    """``step(batch)``: the training step replayed from a graph for batches of the captured size."""

    def __init__(self, net: nn.Module, counters: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
                 example: tuple[torch.Tensor, torch.Tensor]) -> None:
        """``loss_fn(batch)``: ``(loss to minimize, loss to report)`` of a raw batch; ``counters``: buffers the
        step updates (undone after the warm-up like the weights)."""
        device = example[0].device
        self.optimizer, self.loss_fn = optimizer, loss_fn
        # the tensors a schedule that cycles momentum must write beta1 into (see capturable)
        self.betas = [tuple(g["betas"]) if isinstance(g.get("betas", (0,))[0], torch.Tensor) else ()
                      for g in optimizer.param_groups]
        self.static_batch = tuple(t.clone() for t in example)
        saved_net = {k: v.detach().clone() for k, v in net.state_dict().items()}
        saved_counters = [c.clone() for c in counters]
        saved_state = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                       for p, s in optimizer.state.items()}

        def step() -> torch.Tensor:
            total, reported = loss_fn(self.static_batch)
            total.backward()
            optimizer.step()
            return reported.detach()

        with torch.random.fork_rng(devices=[device]):
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    optimizer.zero_grad(set_to_none=True)
                    step()
            torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():  # undo the warm-up in place: the graph records these very tensors
            for key, value in net.state_dict().items():
                value.copy_(saved_net[key])
            for counter, saved in zip(counters, saved_counters, strict=True):
                counter.copy_(saved)
            for param, state in optimizer.state.items():
                before = saved_state.get(param, {})
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and key in before:
                        value.copy_(before[key])
                    elif isinstance(value, torch.Tensor):
                        value.zero_()  # a fresh optimizer's state: all zeros
        optimizer.zero_grad(set_to_none=True)  # the graph's backward writes the gradients, not adds
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = step()

    def keep_betas_on_device(self) -> None:
        """After a schedule step: one that cycles momentum replaces ``betas`` with floats; write them into
        the captured tensors and put those back."""
        for group, captured in zip(self.optimizer.param_groups, self.betas, strict=True):
            if not captured:
                continue
            for tensor, value in zip(captured, group["betas"], strict=True):
                if tensor is not value:
                    tensor.fill_(float(value))
            group["betas"] = captured

    def matches(self, batch: tuple[torch.Tensor, torch.Tensor]) -> bool:
        return all(t.shape == s.shape and t.device == s.device for t, s in zip(batch, self.static_batch, strict=True))

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        for static, value in zip(self.static_batch, batch, strict=True):
            static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.static_loss

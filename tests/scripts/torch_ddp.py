"""Two gloo processes, DistributedDataParallel over a linear model, every loss: the loss
value and the parameter gradients of one data-parallel step, against one process on the
whole batch. Prints JSON {loss: {"value": err, "grad": err} | {"refused": message}}."""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(__file__))

import parallel_cases as cases

import mlloss.torch


class Model(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        w, h = cases.params(name)
        self.w = torch.nn.Parameter(torch.tensor(w))
        self.heads = mlloss.spec(name).heads
        # a parameter only where a head uses it: DDP waits for every parameter's gradient
        self.h = torch.nn.Parameter(torch.tensor(h)) if self.heads else None
        self.activation = cases.activation(name)

    def forward(self, x):
        scores = x @ self.w
        if self.activation == "sigmoid":
            scores = torch.sigmoid(scores)
        elif self.activation == "softmax":
            scores = torch.softmax(scores, dim=-1)
        if self.h is None:
            return scores, {}
        heads = torch.nn.functional.softplus(x @ self.h)
        return scores, {k: heads[:, i] for i, k in enumerate(self.heads)}


def step(model, criterion, x, y):
    scores, heads = model(x)
    value = criterion(scores, y, **heads)
    value.backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return value.detach(), grads


def worker(rank, world, init, queue):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    results = {}
    start = sum(cases.SHARDS[:rank])
    shard = slice(start, start + cases.SHARDS[rank])
    for name, criterion in cases.shardable(
        lambda n: mlloss.torch.Loss(n, data_parallel=True), results
    ):
        x, y = (torch.tensor(a) for a in cases.data(name))
        model = torch.nn.parallel.DistributedDataParallel(Model(name))
        value, grads = step(model, criterion, x[shard], y[shard])
        dist.all_reduce(value)
        value /= world  # the replicas' values average to the global mean
        if rank == 0:
            alone, alone_grads = step(Model(name), mlloss.torch.Loss(name), x, y)
            results[name] = cases.errors(value, grads, alone, alone_grads)
    # the control: each replica's own mean, as DDP averages it (wrong with uneven counts)
    name = "sigmoid_bce"
    x, y = (torch.tensor(a) for a in cases.data(name))
    model = torch.nn.parallel.DistributedDataParallel(Model(name))
    _, grads = step(model, mlloss.torch.Loss(name), x[shard], y[shard])
    if rank == 0:
        _, alone_grads = step(Model(name), mlloss.torch.Loss(name), x, y)
        error = float((grads[0] - alone_grads[0]).abs().max() / alone_grads[0].abs().max())
        results["naive mean of means (sigmoid_bce)"] = {"grad": error}
        queue.put(results)
    # every DDP reducer gone and both ranks done before the process group goes
    del model
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def main():
    world = len(cases.SHARDS)
    init = "file://" + os.path.join(tempfile.mkdtemp(), "rendezvous")
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(worker, args=(world, init, queue), nprocs=world, start_method="spawn")
    json.dump(queue.get(), sys.stdout)


if __name__ == "__main__":
    main()

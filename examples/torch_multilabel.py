"""Train a small multi-label classifier in PyTorch with the asymmetric loss (ASL), decode
with ASL's own rule (sigmoid > 0.5), report F1 and mAP. Runs in seconds on a CPU."""

import torch
from _common import CLASSES, data, report

import mlloss.torch


def main() -> None:
    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = (torch.tensor(a) for a in data())
    model = torch.nn.Sequential(
        torch.nn.Linear(x_train.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, CLASSES)
    )
    criterion = mlloss.torch.Loss("asl", gamma_neg=4.0, clip=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _epoch in range(10):
        for batch in torch.randperm(len(x_train)).split(128):
            optimizer.zero_grad()
            criterion(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        logits = model(x_test)
    report("asl", y_test, criterion.decode(logits), torch.sigmoid(logits))


if __name__ == "__main__":
    main()

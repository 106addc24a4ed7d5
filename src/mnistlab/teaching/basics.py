"""The lessons the tutorials start with, before MNIST: gradient descent on a line, and XOR."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from .book import Context, Page, lesson


@lesson("gradient_descent", "Gradient descent on a linear regression",
        "a graph of placeholders and Variables, run in a Session; `GradientDescentOptimizer(lr).minimize(mse)` "
        "changes the Variables a step at a time.")
def gradient_descent(ctx: Context) -> Page:
    """y = 3x + 2 plus noise, fitted by full-batch gradient descent with autograd at four learning rates."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, generator=generator) * 2 - 1
    y = 3 * x + 2 + 0.1 * torch.randn(200, 1, generator=generator)
    steps = ctx.steps(100, 5)
    rates = (0.01, 0.1, 0.5, 1.05)
    curves, fits = {}, {}
    for lr in rates:
        w = torch.zeros(1, requires_grad=True)  # nn.Parameter is this: a tensor that asks for gradients
        b = torch.zeros(1, requires_grad=True)
        losses = []
        for _ in range(steps):
            loss = ((x * w + b - y) ** 2).mean()
            loss.backward()  # autograd: d loss / d w and d loss / d b into w.grad, b.grad
            with torch.no_grad():
                w -= lr * w.grad
                b -= lr * b.grad
                w.grad.zero_()
                b.grad.zero_()
            losses.append(loss.item())
        curves[lr], fits[lr] = losses, (w.item(), b.item())
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for lr, losses in curves.items():
        axes[0].semilogy(range(1, len(losses) + 1), losses, label=f"lr={lr}")
    axes[0].set(xlabel="step", ylabel="mean squared error", title="the loss, step by step")
    axes[0].legend()
    axes[1].scatter(x, y, s=6, color="0.6")
    line = torch.linspace(-1, 1, 2)
    for lr in (0.01, 0.5):
        w, b = fits[lr]
        axes[1].plot(line, w * line + b, label=f"lr={lr}: y = {w:.2f}x + {b:.2f}")
    axes[1].set(xlabel="x", ylabel="y", title=f"the fitted line after {steps} steps")
    axes[1].legend()
    numbers = {f"lr={lr}": f"w={w:.3f}, b={b:.3f}, loss {curves[lr][-1]:.4g} after {steps} steps"
               for lr, (w, b) in fits.items()}
    low, good, high = curves[0.01][-1], curves[0.5][-1], curves[1.05][-1]
    reading = (f"The true line is y = 3x + 2. At lr=0.01 the steps are too short: after {steps} steps the loss "
               f"is still {low:.3g}; at 0.5 it reached the noise's floor ({good:.3g}, the noise's variance is "
               f"0.01). Past 2 / the loss's curvature (1.0 here, set by b) each step overshoots further: at 1.05 the "
               f"loss grows to {high:.3g}, the start of the divergence that ends in NaN.")
    return Page(figure, numbers, reading)


@lesson("xor", "XOR: why a hidden layer",
        "a single `tf.layers.dense` (logistic regression) cannot separate XOR; one hidden layer with a "
        "non-linearity can.")
def xor(ctx: Context) -> Page:
    """The four XOR points (with a little noise around each), a linear model against a 2-8-1 network."""
    generator = torch.Generator().manual_seed(0)
    corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    x = corners.repeat(50, 1) + 0.1 * torch.randn(200, 2, generator=generator)
    y = labels.repeat(50)
    torch.manual_seed(0)
    models = {"linear (no hidden layer)": nn.Linear(2, 1),
              "hidden layer of 8 tanh units": nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))}
    accuracy = {}
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.5, 1.5, 100), torch.linspace(-0.5, 1.5, 100),
                                      indexing="xy"), -1).reshape(-1, 2)
    for ax, (name, model) in zip(axes, models.items(), strict=True):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(ctx.steps(500, 5)):
            optimizer.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y).backward()
            optimizer.step()
        with torch.no_grad():
            accuracy[name] = ((model(x).squeeze(1) > 0).float() == y).float().mean().item()
            regions = torch.sigmoid(model(grid)).reshape(100, 100)
        ax.contourf(torch.linspace(-0.5, 1.5, 100), torch.linspace(-0.5, 1.5, 100), regions, levels=20,
                    cmap="RdBu_r", alpha=0.6)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.2)
        ax.set(title=f"{name}: {accuracy[name]:.0%} right", xlabel="x1", ylabel="x2")
    linear, hidden = accuracy.values()
    numbers = {name: f"{value:.1%} of the 200 points right" for name, value in accuracy.items()}
    reading = (f"A line splits the plane in two, and no line puts (0,1) and (1,0) on one side and (0,0) and (1,1) "
               f"on the other: the linear model gets {linear:.0%}, at best 75% by construction. The hidden layer "
               f"bends the boundary ({hidden:.0%}): what makes a network more than a linear model is the "
               f"non-linearity between its layers.")
    return Page(figure, numbers, reading)

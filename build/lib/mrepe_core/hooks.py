"""The only place that registers forward hooks on a model.

Four kinds, each a context manager whose hooks exist only inside the ``with`` block and are removed
on exit, also on error:

* ``add_to_outputs``: add a term to the output of chosen modules (steering);
* ``record_outputs``: keep a copy of their outputs (extraction, patching);
* ``patch_outputs``: overwrite parts of their outputs (activation patching);
* ``read_and_stop``: read one module's output and stop the forward pass there (concept maps);
* ``rewrite_kwargs``: change the keyword arguments a module is called with (attention bias).

Hooks are global to a module, so every context holds the model exclusively (``models.exclusive``)
when given one: two requests steering the same model at once would otherwise see each other's terms.
Each hook carries ``_mrepe_hook = True`` so that ``count`` can tell ours from anyone else's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext

import torch
from torch import nn


class StopForward(Exception):
    """Raised by ``read_and_stop``'s hook to skip the layers above the one read."""


def hidden_of(output):
    """The hidden states in a module's output (decoder layers return a tensor or a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output, hidden: torch.Tensor):
    """``output`` with its hidden states replaced, keeping the rest of a tuple."""
    return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden


def _mark(hook):
    hook._mrepe_hook = True
    return hook


def _holding(model: nn.Module | None):
    if model is None:
        return nullcontext()
    from .models import exclusive

    return exclusive(model)


@contextmanager
def add_to_outputs(
    modules: Mapping[nn.Module, Callable[[torch.Tensor], torch.Tensor]], model: nn.Module | None = None
) -> Iterator[None]:
    """``output <- output + term(output)`` for each module; ``term`` gets the hidden states
    [rows, positions, d] and returns something that broadcasts to them.

    The hooks are prepended: transformers records ``output_hidden_states`` with forward hooks of
    its own, which would otherwise run first and miss the term added at that layer.
    """
    with _holding(model), ExitStack() as stack:
        for module, term in modules.items():

            def hook(mod, args, output, term=term):
                hidden = hidden_of(output)
                return with_hidden(output, hidden + term(hidden))

            stack.callback(module.register_forward_hook(_mark(hook), prepend=True).remove)
        yield


@contextmanager
def record_outputs(
    modules: Mapping[int, nn.Module],
    model: nn.Module | None = None,
    select: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[int, torch.Tensor]]:
    """Keep each module's hidden-state output (a detached copy, or ``select(hidden)``) under its key.

    A later call of the same module overwrites its entry (the context sees the last forward pass).
    """
    store: dict[int, torch.Tensor] = {}
    with _holding(model), ExitStack() as stack:
        for key, module in modules.items():

            def hook(mod, args, output, key=key):
                hidden = hidden_of(output).detach()
                store[key] = select(hidden) if select is not None else hidden.clone()

            stack.callback(module.register_forward_hook(_mark(hook)).remove)
        yield store


@contextmanager
def patch_outputs(
    patches: Mapping[nn.Module, Callable[[torch.Tensor], torch.Tensor]], model: nn.Module | None = None
) -> Iterator[None]:
    """Replace each module's hidden-state output by ``patch(hidden)`` (which may edit a copy)."""
    with _holding(model), ExitStack() as stack:
        for module, patch in patches.items():

            def hook(mod, args, output, patch=patch):
                return with_hidden(output, patch(hidden_of(output)))

            stack.callback(module.register_forward_hook(_mark(hook)).remove)
        yield


@contextmanager
def read_and_stop(
    module: nn.Module, select: Callable[[torch.Tensor], torch.Tensor], model: nn.Module | None = None
) -> Iterator[list[torch.Tensor]]:
    """Read ``select(hidden)`` at ``module``'s output, then stop the forward pass (``StopForward``
    is raised by the hook and swallowed by this context). Registered after any hooks already on
    the module, so it reads what they produced (e.g. the steered output)."""
    captured: list[torch.Tensor] = []

    def hook(mod, args, output):
        captured.append(select(hidden_of(output)))
        raise StopForward

    with _holding(model):
        handle = module.register_forward_hook(_mark(hook))
        try:
            yield captured
        except StopForward:
            pass
        finally:
            handle.remove()


@contextmanager
def rewrite_kwargs(
    modules: Mapping[nn.Module, Callable[[tuple, dict], tuple[tuple, dict]]], model: nn.Module | None = None
) -> Iterator[None]:
    """Call each module with ``rewrite(args, kwargs)`` instead of its own arguments (pre-hooks)."""
    with _holding(model), ExitStack() as stack:
        for module, rewrite in modules.items():

            def hook(mod, args, kwargs, rewrite=rewrite):
                return rewrite(args, kwargs)

            stack.callback(module.register_forward_pre_hook(_mark(hook), with_kwargs=True).remove)
        yield


def count(modules) -> int:
    """Hooks of ours (any kind) on these modules: 0 outside every context of this module."""
    return sum(
        1
        for m in modules
        for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
        if getattr(h, "_mrepe_hook", False)
    )


def _transformers_capture_hook(hook) -> bool:
    # transformers 5 leaves an output-capturing hook on each layer after the first call with
    # output_hidden_states; it records only while such a call is running.
    return (
        getattr(hook, "__module__", "").startswith("transformers.")
        and getattr(hook, "__name__", "") == "output_capturing_hook"
    )


def foreign_hooks(module: nn.Module) -> list:
    """Hooks on ``module`` other than transformers' own output-capturing ones: code (ours from an
    enclosing context, or anyone's) that expects the module to be called, so it must not be bypassed."""
    return [
        h
        for h in (*module._forward_hooks.values(), *module._forward_pre_hooks.values())
        if not _transformers_capture_hook(h)
    ]

"""A timm model with its initial weights: timm's random ones, timm's pretrained ones, or a file's.

Initial weights - ``--pretrained`` (timm's weights for the architecture, from the local Hugging
Face cache or the hub) or ``--init-checkpoint`` (a weights file or a trainer run) - are loaded
the way timm's train.py loads ``--pretrained-path``: ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(..., num_classes=-1))``, so the architecture's
``checkpoint_filter_fn`` (renamed keys, resized position embeddings), the input-conv adaptation
and the dropped classifier all apply. A ``load_state_dict`` pre-hook (torch's public hook API)
sees the state dict timm finally hands the model and records which tensors it fills
(:class:`WeightFit`); weights that leave any non-classifier tensor unfilled are refused unless
``--init-partial``. The KD teacher's weights go through the same loader
(:func:`create_with_weights`, its classifier kept): ``trainer.trained_model``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

from trainer.checkpoint import CHECKPOINT
from trainer.config import ConfigError
from trainer.export import read_export
from trainer.head_order import classifier_state_keys

FEW = 4  # name at most this many tensors in a message, else count them
FIRST_FEW = 5  # tensors that did not fit named in a refusal


def check_model_name(name: str) -> None:
    """Refuse a name timm does not know."""
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm model {name!r} (see timm.list_models())")


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """``timm.create_model(name, num_classes=num_classes)``: timm's random initial weights."""
    check_model_name(name)
    return timm.create_model(name, num_classes=num_classes, **kwargs)


def read_weights(source: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, description)`` of a weights source: a trainer run directory (its exported
    weights, or those in ``checkpoint.pt`` while it runs, head in class order) or a file read by
    timm's ``load_state_dict`` (``.safetensors``, a plain ``.pth``, timm's ``*.pth.tar`` training
    checkpoint - its EMA weights first, as timm - or a ``{"model": ...}`` wrapper)."""
    path = Path(source)
    if path.is_dir():
        return read_export(path)[1], str(path)
    if not path.is_file():
        raise ConfigError(f"weights {path} not found (a weights file or a trainer run directory)")
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as exc:  # torch, safetensors and timm raise many kinds for a file that is not weights
        hint = "; pass its run directory instead" if path.name == CHECKPOINT else ""
        raise ConfigError(f"{path} is not a weights file timm can read ({first_line(exc)}){hint}") from None
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} holds no state dict of tensors")
    return state, str(path)


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line errors."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def counted(names: list[str], what: str) -> str:
    """``3 WHAT: a, b, c``, or only the count when there are many."""
    return f"{len(names)} {what}" + (f": {', '.join(names)}" if len(names) <= FEW else "")


@dataclass
class WeightFit:
    """How the state dict timm hands a model fitted it, recorded by :meth:`pre_hook` during the
    load: each of the model's ``total`` tensors is loaded, a skipped classifier tensor, a missing
    BatchNorm counter, or unfit (missing or another shape: left as initialised)."""
    keep_classifier: bool = False
    total: int = 0
    loaded: list[str] = field(default_factory=list)
    classifier: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)
    unfit: dict[str, str] = field(default_factory=dict)  # name -> why
    unused: list[str] = field(default_factory=list)  # source tensors the model has no place for
    seen: bool = False

    def pre_hook(self, module: nn.Module, state_dict: dict, prefix: str, *_) -> None:
        """``load_state_dict`` pre-hook: at the model's own load (prefix ``""``) make
        ``state_dict`` fit the model exactly - the source's tensor where name and shape match, the
        model's own tensor elsewhere - and record which is which."""
        if prefix:  # a submodule's share of the same load
            return
        own = module.state_dict()
        skip = set() if self.keep_classifier else set(classifier_state_keys(module))
        self.loaded, self.classifier, self.counters, self.unfit = [], [], [], {}  # the last load counts
        self.unused = [k for k in state_dict if k not in own]
        for key in self.unused:
            del state_dict[key]
        for key, tensor in own.items():
            offered = state_dict.get(key)
            if key in skip:
                self.classifier.append(key)
            elif offered is None and key.endswith(".num_batches_tracked"):
                self.counters.append(key)  # as torch's BatchNorm does for older state dicts
            elif offered is None:
                self.unfit[key] = "missing"
            elif offered.shape != tensor.shape:
                self.unfit[key] = f"source {list(offered.shape)}, model {list(tensor.shape)}"
            else:
                self.loaded.append(key)
                continue
            state_dict[key] = tensor
        self.total, self.seen = len(own), True

    def summary(self, source: str) -> str:
        """``init: loaded K of N tensors from SOURCE (skipped: ...)``."""
        skipped = self.classifier if len(self.classifier) <= FEW else [f"{len(self.classifier)} classifier tensors"]
        notes = [f"skipped: {', '.join(skipped)}"] if skipped else []
        if self.unfit:
            notes.append(counted(list(self.unfit), "left as initialised"))
        if self.counters:
            notes.append(f"{len(self.counters)} BatchNorm counters not in the source")
        if self.unused:
            notes.append(counted(self.unused, "source tensors unused"))
        return (f"init: loaded {len(self.loaded)} of {self.total} tensors from {source}"
                + (f" ({'; '.join(notes)})" if notes else ""))

    def unfit_message(self, source: str, name: str) -> str:
        """``SOURCE does not fit NAME: ...``, naming the first few tensors that did not fit."""
        first = ", ".join(f"{k}: {why}" for k, why in list(self.unfit.items())[:FIRST_FEW])
        more = f", and {len(self.unfit) - FIRST_FEW} more" if len(self.unfit) > FIRST_FEW else ""
        return (f"{source} does not fit {name}: {len(self.unfit)} of its "
                f"{self.total - len(self.classifier)} tensors besides the classifier are missing "
                f"from the source or shaped otherwise ({first}{more})")


@contextlib.contextmanager
def hooked_loads(hook):
    """Give every module built inside the block ``hook`` as a ``load_state_dict`` pre-hook (torch's
    global module-registration hook sees each module that gets children), so the load timm does
    inside ``create_model`` passes through it; all hooks are removed on exit."""
    hooked: dict[int, tuple[nn.Module, object]] = {}  # the module is kept so its id stays unique

    def on_register(parent, name, child):
        if id(parent) not in hooked:
            hooked[id(parent)] = (parent, parent.register_load_state_dict_pre_hook(hook))

    registration = torch.nn.modules.module.register_module_module_registration_hook(on_register)
    try:
        yield
    finally:
        registration.remove()
        for _, handle in hooked.values():
            handle.remove()


def create_with_weights(name: str, num_classes: int, overlay: dict, source: str,
                        keep_classifier: bool = False) -> tuple[nn.Module, WeightFit]:
    """``timm.create_model(name, num_classes=..., pretrained=True, pretrained_cfg_overlay=overlay)``
    and how the weights fitted. The classifier is dropped as timm's train.py does (overlay
    ``num_classes=-1``), or kept with ``keep_classifier`` (a KD teacher: its rows as trained).
    Errors of timm's loader (the filter of a foreign state dict, a download) become ConfigError."""
    check_model_name(name)
    fit = WeightFit(keep_classifier)
    overlay = {**overlay, **({"num_classes": num_classes, "label_offset": 0} if keep_classifier
                             else {"num_classes": -1})}
    try:
        with hooked_loads(fit.pre_hook):
            model = timm.create_model(name, num_classes=num_classes, pretrained=True,
                                      pretrained_cfg_overlay=overlay)
    except Exception as exc:  # noqa: BLE001 - a download, or whatever a filter raises on foreign weights
        if isinstance(exc, OSError) and "state_dict" not in overlay:  # the hub or a URL
            raise ConfigError(f"timm's weights for {name} ({source}) are neither in the local cache nor "
                              f"reachable ({first_line(exc)}); fetch them where the hub is reachable "
                              "(HF_HOME is the cache) or pass --init-checkpoint FILE") from None
        raise ConfigError(f"timm cannot load {source} into {name} ({first_line(exc)})") from None
    model.pretrained_cfg.pop("state_dict", None)  # timm's copy of the overlay's weights
    return model, fit


def pretrained_source(name: str) -> str:
    """Where timm takes ``name``'s pretrained weights from (its hub id, else its URL)."""
    check_model_name(name)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.has_weights:
        raise ConfigError(f"--pretrained: timm has no pretrained weights for {name}")
    return cfg.hf_hub_id or cfg.url or cfg.file


def initial_model(config, num_classes: int, log=print) -> nn.Module:
    """``config.model`` sized to ``num_classes`` with the run's initial weights: timm's random
    ones, timm's pretrained ones (``--pretrained``) or a file's or run's (``--init-checkpoint``),
    the classifier as initialised either way; logs one ``init:`` line."""
    if config.pretrained:
        source, overlay = pretrained_source(config.model), {}
        if "21k" in source.lower():
            log(f"note: {source} has already been trained on ImageNet-21K; the paper starts from "
                "ImageNet-1K weights (e.g. --model tresnet_m.miil_in1k; timm.list_pretrained() lists the tags)")
    elif config.init_checkpoint:
        state, source = read_weights(config.init_checkpoint)
        overlay = {"state_dict": state}
    else:
        return create_model(config.model, num_classes)
    model, fit = create_with_weights(config.model, num_classes, overlay, source)
    if not fit.seen:  # a foreign format (e.g. JAX .npz) loaded by the model's own loader
        log(f"init: loaded {source} through {config.model}'s own loader (tensors not counted)")
        return model
    if not fit.loaded:
        raise ConfigError(f"{fit.unfit_message(source, config.model)}; no tensor fits, so "
                          "--init-partial would load nothing")
    if fit.unfit and not config.init_partial:
        raise ConfigError(f"{fit.unfit_message(source, config.model)}; --init-partial loads the "
                          f"{len(fit.loaded)} that fit and leaves the rest as initialised")
    log(fit.summary(source))
    return model

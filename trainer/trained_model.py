"""Loading a trained model: the one way ``predict``, ``evaluate`` and the KD teacher get theirs.

:func:`load_trained_model` takes a trainer run directory (its ``model.json`` names the
architecture and the classes; the weights are its export ``model.safetensors``, or those in
``checkpoint.pt`` while it runs) or a weights file (anything timm's ``load_state_dict`` reads,
with the architecture and class count given), and returns timm's model holding those weights on
the CPU, its head in class order (output ``c`` is class ``c``). Every tensor must fit, the head
included.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from trainer.config import ConfigError
from trainer.export import read_export
from trainer.initial_weights import WeightFit, create_model, create_with_weights, read_weights


@dataclass(frozen=True)
class TrainedModel:
    """A loaded trained model and what came with it."""

    model: nn.Module  # on the CPU, head in class order
    card: dict | None  # a run directory's model.json; None for a weights file
    tree_file: Path | None  # a run directory's semantic_tree.json; None for a weights file


class UnfitWeights(ConfigError):
    """Weights that leave tensors of the model unfilled (or shaped otherwise) on timm's route;
    ``detail`` names them (:meth:`WeightFit.unfit_message`)."""

    def __init__(self, fit: WeightFit, source: str, name: str, num_classes: int):
        self.detail, self.num_classes = fit.unfit_message(source, name), num_classes
        super().__init__(f"{self.detail} (all of them are needed, its {num_classes}-class head included)")


def load_trained_model(source: str | Path, model_name: str | None = None, num_classes: int | None = None,
                       timm_loader: bool = False) -> TrainedModel:
    """The trained model of ``source``, a run directory or a weights file (see the module docstring).

    ``model_name`` and ``num_classes`` default to the run's (``model.json``) and are needed for a
    weights file; without ``model_name`` ``source`` must be a run directory (FileNotFoundError
    ``... is not a trainer run directory``).

    The weights are the model's state dict as saved (torch's strict load; a mismatch is a
    :class:`ConfigError` ``the weights of SOURCE do not fit NAME with N classes: ...``), or with
    ``timm_loader`` they go through timm's pretrained loader as initial weights do
    (:func:`~trainer.initial_weights.create_with_weights`: the architecture's checkpoint filter
    renames keys and resizes position embeddings), a tensor left unfilled raising
    :class:`UnfitWeights`."""
    path = Path(source)
    card = tree_file = None
    if model_name is None or path.is_dir():
        card, state, tree_file = read_export(path)
        where = str(path)
    else:
        state, where = read_weights(path)
    name = card["model"] if model_name is None else model_name
    num_classes = card["num_classes"] if num_classes is None else num_classes
    if timm_loader:
        model, fit = create_with_weights(name, num_classes, {"state_dict": state}, where, keep_classifier=True)
        if fit.unfit:
            raise UnfitWeights(fit, where, name, num_classes)
        return TrainedModel(model, card, tree_file)
    model = create_model(name, num_classes)
    try:
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    except RuntimeError as exc:
        raise ConfigError(f"the weights of {source} do not fit {name} with {num_classes} "
                          f"classes: {str(exc).strip().splitlines()[0]}") from None
    return TrainedModel(model, card, tree_file)

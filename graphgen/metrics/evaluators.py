"""graphgen's metrics as ``shared.evaluation`` Evaluators over a :class:`SampleSet` of generated items.

Molecules (SMILES strings or RDKit Mols, ``None`` for a failed decode): ``molecules`` (validity without
correction, uniqueness, fragments, heavy-atom and element statistics; needs nothing), ``novelty`` (context
``train_smiles``), ``fcd`` (context ``test_smiles``; ``device``). Graphs (networkx): ``graph_mmd`` (degree,
clustering and orbit MMD^2 of the GDSS protocol; context ``reference_graphs``). ``default_evaluators(is_molecule)``
lists them; :func:`shared.evaluation.run_evaluators` runs them and reports what it skipped and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from shared.evaluation import evaluator

__all__ = ["SampleSet", "default_evaluators", "fcd_evaluator", "graph_mmd_evaluator", "molecule_evaluator",
           "nest_atom_fractions", "novelty_evaluator"]


class SampleSet:
    """Generated items, with the canonical SMILES of the valid molecules computed once for all evaluators."""

    def __init__(self, items: Sequence[Any], is_molecule: bool):
        self.items = list(items)
        self.is_molecule = is_molecule

    def __len__(self) -> int:
        return len(self.items)

    @cached_property
    def valid_smiles(self) -> list[str]:
        from graphgen.metrics.molecules import canonical_smiles

        return [s for s in (canonical_smiles(s) if s else None for s in self.items) if s]

    @classmethod
    def of(cls, generated: Any, is_molecule: bool = True) -> "SampleSet":
        return generated if isinstance(generated, SampleSet) else cls(generated, is_molecule)


@evaluator("molecules")
def molecule_evaluator(generated: Any, context: dict) -> dict[str, float]:
    from graphgen.metrics.molecules import molecule_statistics, uniqueness

    samples = SampleSet.of(generated)
    valid = samples.valid_smiles
    metrics = {"validity_wo_correction": len(valid) / max(len(samples), 1),
               "uniqueness": uniqueness(valid) if valid else 0.0}
    if valid:
        stats = molecule_statistics(valid)
        fractions = stats.pop("atom_fractions")
        metrics.update(stats)
        metrics.update({f"{ATOM_FRACTION}{element}": value for element, value in fractions.items()})
    return metrics


ATOM_FRACTION = "atom_fraction_"  # metric prefix: one float per element (a report's values are numbers)


def nest_atom_fractions(metrics: dict) -> dict:
    """``atom_fraction_C``... grouped back into one ``atom_fractions`` dict, where the first of them stood (the
    layout of ``graphgen evaluate``'s output)."""
    out: dict = {}
    for key, value in metrics.items():
        if key.startswith(ATOM_FRACTION):
            out.setdefault("atom_fractions", {})[key[len(ATOM_FRACTION):]] = value
        else:
            out[key] = value
    return out


@evaluator("novelty", requires={"train_smiles"})
def novelty_evaluator(generated: Any, context: dict) -> dict[str, float]:
    from graphgen.metrics.molecules import novelty

    valid = SampleSet.of(generated).valid_smiles
    return {"novelty": novelty(valid, context["train_smiles"]) if valid else 0.0}


@evaluator("fcd", requires={"test_smiles"})
def fcd_evaluator(generated: Any, context: dict) -> dict[str, float]:
    valid = SampleSet.of(generated).valid_smiles
    if not valid:  # no valid molecule: nothing to embed
        return {}
    from graphgen.metrics.fcd import fcd_score

    return {"fcd": fcd_score(valid, context["test_smiles"], device=context.get("device", "cpu"))}


@evaluator("graph_mmd", requires={"reference_graphs"})
def graph_mmd_evaluator(generated: Any, context: dict) -> dict[str, float]:
    from graphgen.metrics.graph_mmd import eval_graph_list

    return eval_graph_list(context["reference_graphs"], SampleSet.of(generated, is_molecule=False).items)


def default_evaluators(is_molecule: bool, *, fcd: bool = True) -> list:
    """The evaluators of molecule samples (``fcd=False`` leaves FCD out) or of generic graphs."""
    if not is_molecule:
        return [graph_mmd_evaluator]
    return [molecule_evaluator, novelty_evaluator, *([fcd_evaluator] if fcd else [])]

"""crysgen campaigns: property-guided crystals -> validity/composition filters -> CHGNet -> ranking.

The domain side of ``shared.campaign``. Spec keys:

* ``target``: the model's conditioning properties in raw units (the embedded perov-5 model: ``heat_ref``,
  eV/atom); classifier-free guidance with ``guidance_scale``. A target more than ``MAX_TARGET_STD`` training
  standard deviations from the training mean is refused before any work.
* ``filters``: ``valid`` (CDVAE structural and SMACT compositional validity), ``struct_valid``, ``comp_valid``,
  ``unique`` (first of each reduced formula + space group (symprec 0.1) + site count: a cheap proxy of
  StructureMatcher, stated as such), ``max_sites: N``, ``elements: [Ca, Ti, O, ...]``.
* ``verify``: ``chgnet`` (CHGNet single-point energy of the generated structure) or ``relax`` (CHGNet relaxation
  of positions and cell, then its energy).
* ``rank_by``: ``chgnet:energy_per_atom`` / ``relax:energy_per_atom`` (lowest first) or
  ``relax:max_force`` / ``chgnet:max_force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.campaign import CampaignSpec, plot_funnel

__all__ = ["CrysgenCampaign"]

FILTERS = ("valid", "struct_valid", "comp_valid", "unique", "max_sites", "elements")
VERIFIERS = ("chgnet", "relax")
RANK_VALUES = {"energy_per_atom": "energy_per_atom_eV", "max_force": "max_force_eV_A"}
MAX_TARGET_STD = 5.0

_MODELS: dict[str, Any] = {}


def _model(name: str):
    if name not in _MODELS:
        from crysgen.checkpoint import load_model

        _MODELS[name] = load_model(None if name == "default" else name)
    return _MODELS[name]


@dataclass
class CrysgenCampaign:
    name: str = "crysgen"

    def default_model_file(self):
        from crysgen.checkpoint import default_checkpoint

        return default_checkpoint()

    def validate(self, spec: CampaignSpec) -> None:
        unknown = sorted(set(spec.filters) - set(FILTERS))
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; crysgen knows {', '.join(FILTERS)}")
        if "max_sites" in spec.filters and (not isinstance(spec.filters["max_sites"], int)
                                            or spec.filters["max_sites"] < 1):
            raise ValueError(f"filters.max_sites must be a positive integer, got {spec.filters['max_sites']!r}")
        if "elements" in spec.filters:
            _elements(spec.filters["elements"])
        bad = sorted(set(spec.verify) - set(VERIFIERS))
        if bad:
            raise ValueError(f"unknown verifier(s) {bad}; crysgen knows {', '.join(VERIFIERS)}")
        if spec.relax not in (None, "none"):
            raise ValueError(f"relax: {spec.relax!r}: crysgen campaigns do not relax before verification "
                             "(verify: [relax] relaxes with CHGNet); leave the key out")
        model = _model(spec.model)
        if spec.target:
            model.normalise_condition(spec.target)  # names: exactly the model's properties
            props = model.properties
            for name, mean, std in zip(props["names"], props["mean"], props["std"]):
                z = abs(float(spec.target[name]) - float(mean)) / max(float(std), 1e-12)
                if z > MAX_TARGET_STD:
                    raise ValueError(f"target {name}={spec.target[name]:g} is {z:.1f} training standard deviations "
                                     f"from the training mean {float(mean):.3g}: the model has never seen anything "
                                     "like it")
        elif spec.guidance_scale != 1.0:
            raise ValueError("guidance_scale needs a target")
        if spec.rank_by is not None:
            method, sep, value = spec.rank_by.partition(":")
            if not sep or method not in spec.verify or value not in RANK_VALUES:
                raise ValueError(f"rank_by {spec.rank_by!r}: expected METHOD:VALUE with METHOD in verify "
                                 f"{spec.verify} and VALUE one of {', '.join(RANK_VALUES)}")

    def generate_shard(self, spec: CampaignSpec, index: int, seed: int, n: int) -> list[dict]:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        from crysgen.evaluation import composition_validity, structure_validity
        from crysgen.sampling import sample_crystals

        result = sample_crystals(_model(spec.model), n, steps=spec.steps, guidance=spec.target or None,
                                 guidance_scale=spec.guidance_scale, seed=seed, batch_size=n)
        allowed = _elements(spec.filters["elements"]) if "elements" in spec.filters else None
        out = []
        for structure in result.structures:
            if structure is None:  # the matrix decodes to no crystal: fails every filter that looks at it
                out.append({"record": "", "key": None, "filters": {k: False for k in spec.filters if k != "unique"},
                            "values": {"decoded": False}})
                continue
            struct_ok, comp_ok = structure_validity(structure), composition_validity(structure.composition)
            try:
                group = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()
            except Exception:  # noqa: BLE001 - spglib fails on degenerate cells; such a crystal has no group
                group = "none"
            filters = {}
            if spec.filters.get("valid"):
                filters["valid"] = bool(struct_ok and comp_ok)
            if spec.filters.get("struct_valid"):
                filters["struct_valid"] = bool(struct_ok)
            if spec.filters.get("comp_valid"):
                filters["comp_valid"] = bool(comp_ok)
            if "max_sites" in spec.filters:
                filters["max_sites"] = len(structure) <= spec.filters["max_sites"]
            if allowed is not None:
                filters["elements"] = {el.symbol for el in structure.composition.elements} <= allowed
            formula = structure.composition.reduced_formula
            out.append({"record": structure.to(fmt="cif"), "key": f"{formula}|{group}|{len(structure)}",
                        "filters": filters,
                        "values": {"formula": formula, "spacegroup": group, "n_sites": len(structure),
                                   "density": round(float(structure.density), 4), "decoded": True}})
        return out

    def verification(self, spec: CampaignSpec, method: str):
        from crysgen.hooks import CHGNetHook

        hook = CHGNetHook(relax=(method == "relax"))
        return hook, _structure_dict

    def rank_value(self, spec: CampaignSpec, candidate: dict) -> float | None:
        if spec.rank_by is None:
            return None
        method, _, value = spec.rank_by.partition(":")
        result = candidate["verified"].get(method)
        if result is None or result["status"] != "ok":
            return None
        number = result["values"].get(RANK_VALUES[value])
        return None if number is None else float(number)

    def write_outputs(self, spec: CampaignSpec, candidates: list[dict], top: list[dict], out_dir: Path) -> list:
        from shared.io import atomic_write_text
        from shared.plots import histogram_comparison

        folder = out_dir / "top_k"
        for cand in top:
            atomic_write_text(folder / f"{cand['rank']:03d}_{cand['id']}_{cand['values']['formula']}.cif",
                              cand["record"])
        lines = ["| rank | id | formula | space group | sites | ranked value |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['rank']} | {c['id']} | {c['values']['formula']} | {c['values']['spacegroup']} | "
                  f"{c['values']['n_sites']} | {c.get('rank_value', 0):.4g} |" for c in top]
        atomic_write_text(out_dir / "top_k.md", "\n".join(lines) + "\n")
        figures = [plot_funnel(spec, candidates, out_dir / "funnel.png")]
        for method in spec.verify:
            energies = [c["verified"][method]["values"]["energy_per_atom_eV"] for c in candidates
                        if c["verified"].get(method, {}).get("status") == "ok"]
            if energies:
                figures.append(histogram_comparison({f"{method} (n={len(energies)})": energies},
                                                    "CHGNet energy (eV/atom)", out_dir / f"energy_{method}.png"))
        groups: dict[str, int] = {}
        for cand in candidates:
            if cand["values"].get("decoded"):
                groups[cand["values"]["spacegroup"]] = groups.get(cand["values"]["spacegroup"], 0) + 1
        if groups:
            from shared.plots import bar_comparison

            total = sum(groups.values())
            common = dict(sorted(groups.items(), key=lambda kv: -kv[1])[:12])
            figures.append(bar_comparison({"generated": {k: v / total for k, v in common.items()}},
                                          "fraction of decoded crystals", out_dir / "spacegroups.png",
                                          title="space groups (symprec 0.1)"))
        return figures


def _structure_dict(candidate: dict) -> dict:
    from pymatgen.core import Structure

    return Structure.from_str(candidate["record"], fmt="cif").as_dict()


def _elements(symbols) -> set[str]:
    from pymatgen.core import Element

    if not isinstance(symbols, list) or not symbols:
        raise ValueError(f"filters.elements must be a list of element symbols, got {symbols!r}")
    for symbol in symbols:
        if not Element.is_valid_symbol(str(symbol)):
            raise ValueError(f"filters.elements: {symbol!r} is not an element symbol")
    return {str(s) for s in symbols}

"""A chemistry-free campaign domain: the smallest complete ``shared.campaign.CampaignDomain``.

Candidates are integers drawn from the shard's seed; filters keep even numbers (and, optionally, numbers below a
bound); the "verification" squares a number (failing, with a reason, on multiples of 7) after an optional pause;
ranking is the distance of the square to ``target.square``. Used by the engine's tests (every executor must give
the same campaign) and as a template for a new domain.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from shared.campaign import CampaignSpec, plot_funnel, plot_target_histograms

__all__ = ["SquareHook", "ToyDomain"]


@dataclass(frozen=True)
class SquareHook:
    pause_s: float = 0.0
    name: str = "toy-square"
    version: str = "1"

    def key(self, item: int) -> str:
        from shared.hooks import content_hash

        return content_hash(self.name, self.version, int(item))

    def compute_one(self, item: int) -> dict:
        time.sleep(self.pause_s)
        if item % 7 == 0:
            raise ArithmeticError(f"{item} is a multiple of 7")
        return {"square": item * item}


@dataclass
class ToyDomain:
    pause_s: float = 0.0  # per verification, to make a campaign slow enough to interrupt
    name: str = "toy"

    def validate(self, spec: CampaignSpec) -> None:
        unknown = set(spec.filters) - {"even", "below", "unique"}
        if unknown:
            raise ValueError(f"unknown filter(s) {sorted(unknown)}")
        if set(spec.verify) - {"square"}:
            raise ValueError(f"unknown verifier(s) {spec.verify}")
        if any(v < 0 for v in spec.target.values()):
            raise ValueError("a square cannot be negative")

    def generate_shard(self, spec: CampaignSpec, index: int, seed: int, n: int) -> list[dict]:
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            value = rng.randrange(1, 60)
            filters = {}
            if spec.filters.get("even"):
                filters["even"] = value % 2 == 0
            if "below" in spec.filters:
                filters["below"] = value < spec.filters["below"]
            out.append({"record": str(value), "key": str(value), "filters": filters, "values": {"value": value}})
        return out

    def verification(self, spec: CampaignSpec, method: str):
        return SquareHook(self.pause_s), lambda cand: int(cand["record"])

    def rank_value(self, spec: CampaignSpec, candidate: dict) -> float | None:
        result = candidate["verified"].get("square")
        if result is None or result["status"] != "ok":
            return None
        return abs(result["values"]["square"] - spec.target.get("square", 0.0))

    def write_outputs(self, spec: CampaignSpec, candidates: list[dict], top: list[dict], out_dir: Path) -> list:
        from shared.io import atomic_write_text

        atomic_write_text(out_dir / "top.txt", "".join(f"{c['record']}\n" for c in top))
        achieved = {"square": [c["verified"]["square"]["values"]["square"] for c in candidates
                               if c["verified"].get("square", {}).get("status") == "ok"]}
        return [plot_funnel(spec, candidates, out_dir / "funnel.png"),
                *plot_target_histograms(spec, achieved, {"square": "1"}, out_dir)]

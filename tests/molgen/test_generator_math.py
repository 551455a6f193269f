"""Mathematical properties of the generator: SE(3) (not E(3)) and permutation equivariance of MolFlowNet, padding
independence, Kabsch/Hungarian prior alignment, the masking-CTMC path marginals, the sampler's recovery of a known
categorical distribution, the atom-count distribution and the flow loss."""

from __future__ import annotations

import io
import math

import pytest
import torch
from e3nn import o3

from molgen.atom_counts import AtomCountDistribution
from molgen.conditioning import ConditioningConfig
from molgen.flow import FlowConfig, SamplerConfig, align_prior, centred_prior, flow_loss, kabsch_rotation, \
    noisy_state, remove_com, sample_molecules
from molgen.model import FlowNetConfig, MolFlowNet

DTYPE = torch.float64
NUM_CLASSES = {"atom_types": 5, "charges": 3, "bonds": 5}
PROPERTIES = ["mu", "gap"]
ATOL = 1e-9  # double precision: equivariance errors are ~1e-13


def small_net(conditioned: bool = False, cross: bool = True, seed: int = 0) -> MolFlowNet:
    torch.manual_seed(seed)
    cond = ConditioningConfig(properties=PROPERTIES, embedding="concatenate_sum", where="every_layer") \
        if conditioned else ConditioningConfig()
    config = FlowNetConfig(num_layers=2, scalars=16, vectors=4, edge_features=8, rbf=8, cross=cross,
                           conditioning=cond)
    return MolFlowNet(config).double().eval()


def random_state(g: torch.Generator, counts: list[int], slots: int | None = None) -> dict[str, torch.Tensor]:
    """A noisy state (mask tokens included) of molecules with ``counts`` real atoms each, padded to ``slots``."""
    counts_t = torch.tensor(counts)
    bsz, n = len(counts), slots or max(counts)
    mask = torch.arange(n) < counts_t.unsqueeze(1)
    types = torch.randint(0, NUM_CLASSES["atom_types"] + 1, (bsz, n), generator=g) * mask
    charges = torch.randint(0, NUM_CLASSES["charges"] + 1, (bsz, n), generator=g) * mask
    bonds = torch.triu(torch.randint(0, NUM_CLASSES["bonds"] + 1, (bsz, n, n), generator=g), diagonal=1)
    pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    bonds = (bonds + bonds.transpose(1, 2)) * pair
    positions = torch.randn(bsz, n, 3, generator=g, dtype=DTYPE) * 1.5 * mask.unsqueeze(-1)
    return {"positions": positions, "atom_types": types, "charges": charges, "bonds": bonds, "mask": mask}


def random_cond(g: torch.Generator, bsz: int) -> dict[str, torch.Tensor]:
    present = (torch.rand(bsz, len(PROPERTIES), generator=g) < 0.7).to(DTYPE)
    return {"values": torch.randn(bsz, len(PROPERTIES), generator=g, dtype=DTYPE), "present": present}


def run(net: MolFlowNet, state, t, cond):
    with torch.no_grad():
        return net(state, t, cond) if cond is not None else net(state, t)


def transform_positions(state, rot: torch.Tensor, shift: torch.Tensor):
    """``x -> R x + shift`` on the real atoms of each molecule (padding stays as it is)."""
    m = state["mask"].unsqueeze(-1)
    moved = torch.einsum("bij,bnj->bni", rot, state["positions"]) + shift
    return {**state, "positions": torch.where(m, moved, state["positions"])}


def assert_se3_equivariant(net: MolFlowNet, state, t, cond, atol: float = ATOL, seed: int = 0) -> None:
    """Random proper rotations (``e3nn.o3.rand_matrix``) plus translations, one per molecule: positions rotate and
    translate on the real atoms (and stay zero on padding), the atom-type, charge and bond logits are invariant."""
    torch.manual_seed(seed)
    bsz = state["mask"].shape[0]
    rot = o3.rand_matrix(bsz, dtype=DTYPE)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(bsz, dtype=DTYPE))
    shift = torch.randn(bsz, 1, 3, dtype=DTYPE) * 4.0
    ref = run(net, state, t, cond)
    out = run(net, transform_positions(state, rot, shift), t, cond)
    m = state["mask"].unsqueeze(-1)
    expected = torch.where(m, torch.einsum("bij,bnj->bni", rot, ref["positions"]) + shift, 0.0)
    torch.testing.assert_close(out["positions"], expected, atol=atol, rtol=0)
    assert out["positions"][~state["mask"]].abs().max() == 0
    for key in ("atom_types", "charges", "bonds"):
        torch.testing.assert_close(out[key], ref[key], atol=atol, rtol=0)
    # the check is not vacuous: the network really moves the atoms and its logits depend on the geometry
    assert (ref["positions"] - state["positions"])[state["mask"]].abs().max() > 1e-3


COUNTS = [5, 1, 7, 3, 2]  # variable sizes in one padded batch, including a lone atom


@pytest.mark.parametrize("conditioned", [False, True], ids=["unconditional", "cond-every-layer"])
def test_se3_equivariance_positions_and_invariant_logits(conditioned):
    g = torch.Generator().manual_seed(10)
    net = small_net(conditioned)
    state = random_state(g, COUNTS, slots=9)
    t = torch.rand(len(COUNTS), generator=g, dtype=DTYPE)
    cond = random_cond(g, len(COUNTS)) if conditioned else None
    for seed in range(3):
        assert_se3_equivariant(net, state, t, cond, seed=seed)


def test_conditioning_changes_the_output():
    """Guards the conditioned parametrisation above: the condition really enters the network."""
    g = torch.Generator().manual_seed(11)
    net = small_net(conditioned=True)
    state = random_state(g, COUNTS)
    t = torch.full((len(COUNTS),), 0.5, dtype=DTYPE)
    cond = random_cond(g, len(COUNTS))
    cond["present"][:] = 1.0
    a = run(net, state, t, cond)
    b = run(net, state, t, {"values": cond["values"] + 1.0, "present": cond["present"]})
    assert (a["atom_types"] - b["atom_types"]).abs().max() > 1e-4
    assert (a["positions"] - b["positions"]).abs().max() > 1e-6


@pytest.mark.parametrize("conditioned", [False, True], ids=["unconditional", "cond-every-layer"])
def test_permutation_equivariance(conditioned):
    g = torch.Generator().manual_seed(12)
    net = small_net(conditioned)
    state = random_state(g, COUNTS, slots=8)
    bsz, n = state["mask"].shape
    t = torch.rand(bsz, generator=g, dtype=DTYPE)
    cond = random_cond(g, bsz) if conditioned else None
    ref = run(net, state, t, cond)
    for b in (0, 2):
        perm = torch.randperm(n, generator=g)  # over all slots: padding moves between real atoms too
        permuted = {k: v.clone() for k, v in state.items()}
        for key in ("positions", "atom_types", "charges", "mask"):
            permuted[key][b] = state[key][b][perm]
        permuted["bonds"][b] = state["bonds"][b][perm][:, perm]
        out = run(net, permuted, t, cond)
        for key in ("positions", "atom_types", "charges"):
            expected = ref[key].clone()
            expected[b] = ref[key][b][perm]
            torch.testing.assert_close(out[key], expected, atol=ATOL, rtol=0)
        expected = ref["bonds"].clone()
        expected[b] = ref["bonds"][b][perm][:, perm]
        torch.testing.assert_close(out["bonds"], expected, atol=ATOL, rtol=0)
    # bond logits are symmetric in the two slots
    torch.testing.assert_close(ref["bonds"], ref["bonds"].transpose(1, 2), atol=0, rtol=0)


def _reflection(bsz: int) -> torch.Tensor:
    rot = o3.rand_matrix(bsz, dtype=DTYPE)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=DTYPE))
    refl = rot @ mirror
    torch.testing.assert_close(torch.linalg.det(refl), -torch.ones(bsz, dtype=DTYPE))
    return refl


def test_cross_products_break_reflection_equivariance():
    g = torch.Generator().manual_seed(13)
    torch.manual_seed(13)
    state = random_state(g, [6, 7, 4], slots=7)
    bsz = 3
    t = torch.rand(bsz, generator=g, dtype=DTYPE)
    zero = torch.zeros(bsz, 1, 3, dtype=DTYPE)
    m = state["mask"]
    for refl in (torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=DTYPE)).expand(bsz, 3, 3), _reflection(bsz)):
        # SE(3) network (cross products): the mirrored molecule is not treated as the mirrored output
        net = small_net(cross=True)
        ref = run(net, state, t, None)
        out = run(net, transform_positions(state, refl, zero), t, None)
        mirrored = torch.einsum("bij,bnj->bni", refl, ref["positions"])
        rel = (out["positions"] - mirrored)[m].norm() / mirrored[m].norm()
        assert rel > 1e-6, f"SE(3) network is reflection-equivariant (relative difference {rel:.2e})"
        # the logits tell the enantiomers apart too (weakly at initialisation; the E(3) net below gives exactly 0)
        assert (out["atom_types"] - ref["atom_types"]).abs().max() > 1e-9
        # E(3) network (no cross products): reflections are symmetries too
        net = small_net(cross=False)
        ref = run(net, state, t, None)
        out = run(net, transform_positions(state, refl, zero), t, None)
        mirrored = torch.einsum("bij,bnj->bni", refl, ref["positions"])
        torch.testing.assert_close(out["positions"], mirrored, atol=1e-10, rtol=0)
        for key in ("atom_types", "charges", "bonds"):
            torch.testing.assert_close(out[key], ref[key], atol=1e-10, rtol=0)


@pytest.mark.parametrize("conditioned", [False, True], ids=["unconditional", "cond-every-layer"])
def test_padding_and_batch_composition_independence(conditioned):
    g = torch.Generator().manual_seed(14)
    net = small_net(conditioned)
    counts = [4, 6, 2]
    state = random_state(g, counts)
    bsz, n = state["mask"].shape
    t = torch.rand(bsz, generator=g, dtype=DTYPE)
    cond = random_cond(g, bsz) if conditioned else None
    ref = run(net, state, t, cond)
    extra = 4
    padded = {
        # garbage in the padding: huge or NaN positions, out-of-range class indices
        "positions": torch.cat([state["positions"], torch.randn(bsz, extra, 3, generator=g, dtype=DTYPE) * 1e3], 1),
        "atom_types": torch.cat([state["atom_types"], torch.full((bsz, extra), 99)], 1),
        "charges": torch.cat([state["charges"], torch.full((bsz, extra), -7)], 1),
        "mask": torch.cat([state["mask"], torch.zeros(bsz, extra, dtype=torch.bool)], 1),
    }
    bonds = torch.randint(-50, 50, (bsz, n + extra, n + extra), generator=g)
    bonds[:, :n, :n] = state["bonds"]
    padded["bonds"] = bonds
    padded["positions"][:, n + 1] = float("nan")
    in_pad = ~state["mask"]  # the original padding also gets garbage
    padded["positions"][:, :n][in_pad] = 77.0
    padded["atom_types"][:, :n][in_pad] = 42
    out = run(net, padded, t, cond)
    pair = state["mask"].unsqueeze(-1) & state["mask"].unsqueeze(-2)
    m = state["mask"]
    torch.testing.assert_close(out["positions"][:, :n][m], ref["positions"][m], atol=ATOL, rtol=0)
    for key in ("atom_types", "charges"):
        torch.testing.assert_close(out[key][:, :n][m], ref[key][m], atol=ATOL, rtol=0)
    torch.testing.assert_close(out["bonds"][:, :n, :n][pair], ref["bonds"][pair], atol=ATOL, rtol=0)
    # padded slots get zero outputs
    for key in ("positions", "atom_types", "charges"):
        assert torch.isfinite(out[key]).all()
        assert out[key][~padded["mask"]].abs().max() == 0
    pair_p = padded["mask"].unsqueeze(-1) & padded["mask"].unsqueeze(-2)
    assert out["bonds"][~pair_p].abs().max() == 0
    # each molecule alone gives the same outputs as inside the batch
    for b in range(bsz):
        k = counts[b]
        alone = {key: v[b : b + 1, :k] if key != "bonds" else v[b : b + 1, :k, :k] for key, v in state.items()}
        c = {key: v[b : b + 1] for key, v in cond.items()} if cond is not None else None
        single = run(net, alone, t[b : b + 1], c)
        torch.testing.assert_close(single["positions"][0], ref["positions"][b, :k], atol=ATOL, rtol=0)
        torch.testing.assert_close(single["atom_types"][0], ref["atom_types"][b, :k], atol=ATOL, rtol=0)
        torch.testing.assert_close(single["bonds"][0], ref["bonds"][b, :k, :k], atol=ATOL, rtol=0)


# --- Kabsch and prior alignment ----------------------------------------------------------------------------------


def centred_clouds(g: torch.Generator, bsz: int = 64, n: int = 10, min_atoms: int = 3):
    counts = torch.randint(min_atoms, n + 1, (bsz,), generator=g)
    mask = torch.arange(n) < counts.unsqueeze(1)
    x = torch.randn(bsz, n, 3, generator=g, dtype=DTYPE) * torch.tensor([2.0, 1.0, 0.5], dtype=DTYPE)
    return remove_com(x, mask), mask


def test_kabsch_recovers_a_proper_rotation():
    g = torch.Generator().manual_seed(20)
    torch.manual_seed(20)
    source, mask = centred_clouds(g)
    rot = o3.rand_matrix(source.shape[0], dtype=DTYPE)
    target = torch.einsum("bij,bnj->bni", rot, source)
    torch.testing.assert_close(kabsch_rotation(source, target, mask), rot, atol=1e-10, rtol=0)
    # with noise it is still the best proper rotation: no random rotation does better
    noisy = (target + 0.3 * torch.randn(target.shape, generator=g, dtype=DTYPE)) * mask.unsqueeze(-1)
    best = kabsch_rotation(source, noisy, mask)

    def cost(r):
        return ((torch.einsum("bij,bnj->bni", r, source) - noisy) ** 2).sum((1, 2))

    base = cost(best)
    for _ in range(20):
        trial = o3.rand_matrix(source.shape[0], dtype=DTYPE) @ best  # random ones, and near ones
        near = o3.axis_angle_to_matrix(torch.randn(source.shape[0], 3, dtype=DTYPE), torch.full(
            (source.shape[0],), 0.05, dtype=DTYPE)) @ best
        assert (cost(trial) >= base - 1e-9).all()
        assert (cost(near) >= base - 1e-9).all()


def test_kabsch_never_returns_a_reflection():
    eye = torch.eye(3, dtype=DTYPE)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=DTYPE))
    for seed in range(25):
        g = torch.Generator().manual_seed(100 + seed)
        source, mask = centred_clouds(g, bsz=40)
        torch.manual_seed(seed)
        refl = o3.rand_matrix(source.shape[0], dtype=DTYPE) @ mirror
        for target in (source @ mirror, torch.einsum("bij,bnj->bni", refl, source),
                       torch.randn(source.shape, generator=g, dtype=DTYPE)):
            target = remove_com(target, mask)
            r = kabsch_rotation(source, target, mask)
            det = torch.linalg.det(r)
            assert (det - 1).abs().max() < 1e-6, f"seed {seed}: det {det.min():.3f}"
            torch.testing.assert_close(r @ r.transpose(1, 2), eye.expand_as(r), atol=1e-10, rtol=0)
    # for an exact mirror image the orthogonal optimum (the mirror, cost 0) is excluded: the cost stays positive
    g = torch.Generator().manual_seed(7)
    source, mask = centred_clouds(g, bsz=8)
    target = source @ mirror
    r = kabsch_rotation(source, target, mask)
    assert (((torch.einsum("bij,bnj->bni", r, source) - target) ** 2).sum((1, 2)) > 1e-3).all()


def _sorted_pair_distances(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.pdist(x[:n]).sort().values


def test_align_prior_is_a_permuted_rotation_closer_to_the_data():
    g = torch.Generator().manual_seed(21)
    x1, mask = centred_clouds(g, bsz=32, n=12, min_atoms=1)
    x0 = centred_prior(mask, 1.0, g, DTYPE)
    aligned = align_prior(x0, x1, mask)
    m = mask.unsqueeze(-1).to(DTYPE)
    counts = mask.sum(1)
    assert aligned[~mask].abs().max() == 0
    torch.testing.assert_close((aligned * m).sum(1) / counts.unsqueeze(-1), torch.zeros(32, 3, dtype=DTYPE),
                               atol=1e-12, rtol=0)
    for b in range(32):
        n = int(counts[b])
        torch.testing.assert_close(aligned[b, :n].norm(dim=-1).sort().values, x0[b, :n].norm(dim=-1).sort().values,
                                   atol=1e-10, rtol=0)
        if n > 1:
            torch.testing.assert_close(_sorted_pair_distances(aligned[b], n), _sorted_pair_distances(x0[b], n),
                                       atol=1e-10, rtol=0)
    msd = lambda a: ((a - x1) ** 2 * m).sum((1, 2)) / counts  # noqa: E731
    assert (msd(aligned) <= msd(x0) + 1e-12).all()
    assert (msd(aligned) < msd(x0) - 1e-3).float().mean() > 0.8  # and usually strictly closer
    # a pure relabelling of the prior is undone exactly
    perm = torch.stack([torch.cat([torch.randperm(int(c), generator=g), torch.arange(int(c), 12)]) for c in counts])
    x1_perm = torch.gather(x0, 1, perm.unsqueeze(-1).expand_as(x0))
    torch.testing.assert_close(align_prior(x0, x1_perm, mask), x1_perm, atol=1e-10, rtol=0)


# --- masking CTMC path ---------------------------------------------------------------------------------------------


def clean_batch(g: torch.Generator, counts: list[int], slots: int | None = None) -> dict[str, torch.Tensor]:
    """A clean molecule batch: classes in range (no mask tokens), zero on padding, centred positions."""
    state = random_state(g, counts, slots)
    mask = state["mask"]
    state["atom_types"] = torch.randint(0, NUM_CLASSES["atom_types"], mask.shape, generator=g) * mask
    state["charges"] = torch.randint(0, NUM_CLASSES["charges"], mask.shape, generator=g) * mask
    bonds = torch.triu(torch.randint(0, NUM_CLASSES["bonds"], state["bonds"].shape, generator=g), diagonal=1)
    state["bonds"] = (bonds + bonds.transpose(1, 2)) * (mask.unsqueeze(-1) & mask.unsqueeze(-2))
    state["positions"] = remove_com(state["positions"], mask)
    return state


def _within_binomial(count: int, total: int, p: float, sigmas: float = 3.0) -> bool:
    return abs(count - total * p) <= sigmas * math.sqrt(total * p * (1 - p))


@pytest.mark.parametrize("t_value", [0.3, 0.8])
def test_masking_path_marginals(t_value):
    g = torch.Generator().manual_seed(30)
    counts = torch.randint(5, 21, (48,), generator=g).tolist()
    batch = clean_batch(g, counts)
    t = torch.full((48,), t_value, dtype=DTYPE)
    state, x0 = noisy_state(batch, t, NUM_CLASSES, FlowConfig(), g)
    mask = batch["mask"]
    for key in ("atom_types", "charges"):
        masked = state[key] == NUM_CLASSES[key]
        total = int(mask.sum())
        assert _within_binomial(int((masked & mask).sum()), total, 1 - t_value), key
        kept = mask & ~masked
        assert torch.equal(state[key][kept], batch[key][kept])  # unmasked tokens are the clean ones
    upper = torch.triu(mask.unsqueeze(-1) & mask.unsqueeze(-2), diagonal=1)
    bonds_masked = (state["bonds"] == NUM_CLASSES["bonds"]) & upper
    assert _within_binomial(int(bonds_masked.sum()), int(upper.sum()), 1 - t_value)
    assert torch.equal(state["bonds"], state["bonds"].transpose(1, 2))
    kept = upper & ~bonds_masked
    assert torch.equal(state["bonds"][kept], batch["bonds"][kept])
    # positions on the linear path between the aligned prior and the data
    m = mask.unsqueeze(-1).to(DTYPE)
    torch.testing.assert_close(state["positions"], (t_value * batch["positions"] + (1 - t_value) * x0) * m,
                               atol=1e-12, rtol=0)


def test_masking_fraction_follows_each_molecules_time():
    g = torch.Generator().manual_seed(31)
    batch = clean_batch(g, [30] * 40)
    t = torch.linspace(0.0, 1.0, 40, dtype=DTYPE)
    state, _ = noisy_state(batch, t, NUM_CLASSES, FlowConfig(align_prior=False), g)
    frac = (state["atom_types"] == NUM_CLASSES["atom_types"]).double().mean(1)
    assert frac[0] == 1.0 and frac[-1] == 0.0
    slope = torch.linalg.lstsq(torch.stack([t, torch.ones_like(t)], 1), frac.unsqueeze(1)).solution[:, 0]
    assert slope[0] == pytest.approx(-1.0, abs=0.1) and slope[1] == pytest.approx(1.0, abs=0.06)


# --- sampler -------------------------------------------------------------------------------------------------------

TYPE_P = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.0], dtype=DTYPE)
CHARGE_P = torch.tensor([0.1, 0.7, 0.2], dtype=DTYPE)
BOND_P = torch.tensor([0.6, 0.25, 0.1, 0.05, 0.0], dtype=DTYPE)


class FixedModel:
    """Ignores its input: fixed x1 logits (log-probabilities, -inf for impossible classes) and zero positions."""

    def __init__(self):
        self.calls = 0

    def __call__(self, state, t):
        self.calls += 1
        bsz, n = state["mask"].shape
        return {"positions": torch.zeros(bsz, n, 3),
                "atom_types": TYPE_P.log().expand(bsz, n, -1),
                "charges": CHARGE_P.log().expand(bsz, n, -1),
                "bonds": BOND_P.log().expand(bsz, n, n, -1)}


def _sample(config: SamplerConfig, seed: int = 0, bsz: int = 200, max_atoms: int = 8):
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.randint(3, max_atoms + 1, (bsz,), generator=g)
    num_atoms[0] = max_atoms
    model = FixedModel()
    out = sample_molecules(model, num_atoms, NUM_CLASSES, config, generator=g)
    assert model.calls == config.steps == out.nfe
    return out


def _frequencies(values: torch.Tensor, valid: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    v = values[valid]
    return torch.bincount(v, minlength=k).double() / v.numel(), v.numel()


def assert_matches(freq: torch.Tensor, total: int, p: torch.Tensor, sigmas: float = 3.5) -> None:
    sigma = torch.sqrt(p * (1 - p) / total)
    assert ((freq - p).abs() <= sigmas * sigma + 1e-12).all(), f"{freq.tolist()} vs {p.tolist()}"


def assert_well_formed(out) -> None:
    mask = out.mask
    upper = torch.triu(mask.unsqueeze(-1) & mask.unsqueeze(-2), diagonal=1)
    pair = upper | upper.transpose(1, 2)
    assert torch.equal(out.bonds, out.bonds.transpose(1, 2))
    assert (torch.diagonal(out.bonds, dim1=1, dim2=2) == 0).all()
    assert (out.bonds[~pair] == 0).all()
    assert (out.atom_types[~mask] == 0).all() and (out.charges[~mask] == 0).all()
    for key, k in NUM_CLASSES.items():  # no mask tokens (index k) left, nothing out of range
        values = getattr(out, key)
        assert values.min() >= 0 and values.max() < k, key
    m = mask.unsqueeze(-1).to(out.positions.dtype)
    com = (out.positions * m).sum(1) / m.sum(1)
    assert com.abs().max() < 1e-6
    assert out.positions[~mask].abs().max() == 0


@pytest.mark.parametrize("eta", [0.0, 5.0])
def test_sampler_recovers_the_predicted_categorical_distribution(eta):
    out = _sample(SamplerConfig(steps=20, eta=eta, temperature=1.0, final="sample"), seed=int(eta))
    assert_well_formed(out)
    upper = torch.triu(out.mask.unsqueeze(-1) & out.mask.unsqueeze(-2), diagonal=1)
    assert_matches(*_frequencies(out.atom_types, out.mask, 5), TYPE_P)
    assert_matches(*_frequencies(out.charges, out.mask, 3), CHARGE_P)
    assert_matches(*_frequencies(out.bonds, upper, 5), BOND_P)


def test_low_temperature_sharpens_the_distribution():
    out = _sample(SamplerConfig(steps=20, eta=0.0, temperature=0.5, final="sample"), seed=3)
    assert_well_formed(out)
    freq, total = _frequencies(out.atom_types, out.mask, 5)
    sharpened = TYPE_P ** 2 / (TYPE_P ** 2).sum()  # p ** (1 / T)
    assert_matches(freq, total, sharpened)
    assert freq[0] > TYPE_P[0] + 5 * math.sqrt(0.25 / total)
    hot = _sample(SamplerConfig(steps=20, eta=0.0, temperature=2.0, final="sample"), seed=4)
    assert _frequencies(hot.atom_types, hot.mask, 5)[0][0] < freq[0]


@pytest.mark.parametrize("eta", [0.0, 5.0])
def test_purity_sampling_stays_in_the_support_and_unmasks_everything(eta):
    out = _sample(SamplerConfig(steps=20, eta=eta, temperature=1.0, purity=True, final="sample"), seed=5)
    assert_well_formed(out)
    upper = torch.triu(out.mask.unsqueeze(-1) & out.mask.unsqueeze(-2), diagonal=1)
    types, n_types = _frequencies(out.atom_types, out.mask, 5)
    bonds, n_bonds = _frequencies(out.bonds, upper, 5)
    assert (types[TYPE_P == 0] == 0).all() and types[0] > 0
    assert (bonds[BOND_P == 0] == 0).all() and bonds[0] > 0
    # purity changes which tokens are unmasked first, not the values they take: marginals are kept
    assert_matches(types, n_types, TYPE_P)
    assert_matches(bonds, n_bonds, BOND_P)


# --- atom counts ---------------------------------------------------------------------------------------------------


def test_atom_count_distribution_conditions_on_a_correlated_property():
    g = torch.Generator().manual_seed(40)
    num_atoms = torch.randint(3, 21, (4000,), generator=g)
    p_values = num_atoms.double() + 0.1 * torch.randn(4000, generator=g, dtype=DTYPE)
    other = torch.randn(4000, generator=g, dtype=DTYPE)  # independent of n
    dist = AtomCountDistribution.fit(num_atoms, torch.stack([p_values, other], 1), ["p", "q"], bins=20,
                                     max_atoms=25)
    n = torch.arange(26, dtype=DTYPE)
    prior = dist.probabilities()
    torch.testing.assert_close(prior.sum(), torch.tensor(1.0, dtype=DTYPE))
    torch.testing.assert_close(prior, torch.bincount(num_atoms, minlength=26).double() / 4000)
    high, low = dist.probabilities({"p": 30.0}), dist.probabilities({"p": 3.0})
    for probs in (high, low, dist.probabilities({"p": 11.0, "q": 0.5})):
        torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=DTYPE))
        assert (probs >= 0).all()
    assert high[19:].sum() > 0.99 and low[:5].sum() > 0.99
    assert (high * n).sum() > (prior * n).sum() + 5 > (low * n).sum() + 10
    mid = dist.probabilities({"p": 11.0})
    assert mid[10:13].sum() > 0.9
    # an independent property hardly moves p(n) (a bin holds ~200 molecules: mean n within ~4 standard errors)
    assert abs(float((dist.probabilities({"q": 0.0}) * n).sum() - (prior * n).sum())) < 1.5
    samples = dist.sample(500, {"p": 30.0}, generator=g)
    assert (samples >= 19).all()
    # state-dict round trip, through torch.save
    buffer = io.BytesIO()
    torch.save(dist.state_dict(), buffer)
    buffer.seek(0)
    loaded = AtomCountDistribution.from_state_dict(torch.load(buffer, weights_only=False))
    assert loaded.properties == ["p", "q"]
    for cond in (None, {"p": 30.0}, {"p": 7.2, "q": -1.0}):
        torch.testing.assert_close(loaded.probabilities(cond), dist.probabilities(cond), atol=0, rtol=0)
    with pytest.raises(ValueError, match="no atom-count statistics"):
        dist.probabilities({"r": 1.0})


# --- flow loss -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditioned", [False, True], ids=["unconditional", "cond-every-layer"])
def test_flow_loss_is_finite_positive_and_differentiable(conditioned):
    g = torch.Generator().manual_seed(50)
    net = small_net(conditioned).train()
    batch = clean_batch(g, [6, 3, 8, 5])
    cond = random_cond(g, 4) if conditioned else None
    config = FlowConfig()
    total, terms = flow_loss(net, batch, NUM_CLASSES, config, generator=g, cond=cond)
    assert torch.isfinite(total) and total > 0
    assert set(terms) == {"positions", "atom_types", "charges", "bonds"}
    assert all(torch.isfinite(v) and v >= 0 for v in terms.values())
    # the total is the weighted sum of the reported terms
    torch.testing.assert_close(total.detach(), sum(config.loss_weights[k] * v for k, v in terms.items()))
    total.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) > 0.8 * len(list(net.parameters()))
    assert all(torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_position_loss_vanishes_at_the_data_end_and_matches_the_prior_at_zero():
    g = torch.Generator().manual_seed(51)
    batch = clean_batch(g, [6, 3, 8, 5])
    m = batch["mask"].unsqueeze(-1).to(DTYPE)
    counts = batch["mask"].sum(1)
    config = FlowConfig()

    def echo(state, t):  # predicts x1 = x_t and a uniform distribution over classes
        bsz, n = state["mask"].shape
        return {"positions": state["positions"], "atom_types": torch.zeros(bsz, n, 5, dtype=DTYPE),
                "charges": torch.zeros(bsz, n, 3, dtype=DTYPE), "bonds": torch.zeros(bsz, n, n, 5, dtype=DTYPE)}

    def oracle(state, t):
        return {**echo(state, t), "positions": batch["positions"]}

    near_one = torch.full((4,), 1 - 1e-6, dtype=DTYPE)
    _, terms = flow_loss(oracle, batch, NUM_CLASSES, config, generator=g, t=near_one)
    assert terms["positions"] == 0
    _, terms = flow_loss(echo, batch, NUM_CLASSES, config, generator=g, t=near_one)
    assert 0 <= terms["positions"] < 1e-10  # (1 - t)^2 |x1 - x0|^2
    # at t = 0 the echo model's position loss is the mean squared distance of the aligned prior to the data
    zero = torch.zeros(4, dtype=DTYPE)
    _, terms = flow_loss(echo, batch, NUM_CLASSES, config, generator=torch.Generator().manual_seed(5), t=zero)
    _, x0 = noisy_state(batch, zero, NUM_CLASSES, config, torch.Generator().manual_seed(5))
    expected = (((x0 - batch["positions"]) ** 2 * m).sum((1, 2)) / counts).mean()
    torch.testing.assert_close(terms["positions"], expected)
    # at t = 0 everything is masked and the uniform prediction costs log K per token
    for key in ("atom_types", "charges", "bonds"):
        torch.testing.assert_close(terms[key], torch.tensor(math.log(NUM_CLASSES[key]), dtype=DTYPE))


# --- recipe knobs: training time distribution, interpolant noise, geometry distortion, sampler time grid ------------


@pytest.mark.parametrize("a,b", [(2.0, 1.0), (3.0, 1.0), (1.5, 2.5)])
def test_beta_time_sampling_matches_the_beta_distribution(a, b):
    from scipy import stats

    config = FlowConfig(time_distribution="beta", time_beta=(a, b))
    t = config.sample_time(20_000, torch.Generator().manual_seed(0), dtype=DTYPE)
    assert t.min() >= 0 and t.max() <= 1
    # Kolmogorov-Smirnov against the exact Beta(a, b) CDF; and the draw is reproducible from the seed
    assert stats.kstest(t.numpy(), stats.beta(a, b).cdf).pvalue > 1e-3
    torch.testing.assert_close(t, config.sample_time(20_000, torch.Generator().manual_seed(0), dtype=DTYPE))
    uniform = FlowConfig(t_min=0.2, t_max=0.6).sample_time(20_000, torch.Generator().manual_seed(0), dtype=DTYPE)
    assert uniform.min() >= 0.2 and uniform.max() <= 0.6
    assert stats.kstest(uniform.numpy(), stats.uniform(0.2, 0.4).cdf).pvalue > 1e-3


def test_position_noise_and_distortion_have_the_stated_spread():
    g = torch.Generator().manual_seed(52)
    batch = clean_batch(g, [9] * 400)
    one = torch.ones(400, dtype=DTYPE)  # at t = 1 the plain interpolant is the data itself
    m = batch["mask"]

    def spread(config, seed=0):
        state, _ = noisy_state(batch, one, NUM_CLASSES, config, torch.Generator().manual_seed(seed))
        d = (state["positions"] - batch["positions"])[m]
        return d, state

    d, _ = spread(FlowConfig())
    assert d.abs().max() < 1e-12
    d, state = spread(FlowConfig(position_noise=0.15))
    # centred Gaussian noise: per-coordinate variance sigma^2 (n - 1) / n for n atoms
    torch.testing.assert_close(d.std(), torch.tensor(0.15 * (8 / 9) ** 0.5, dtype=DTYPE), rtol=0.03, atol=0)
    assert (state["positions"][~m] == 0).all()
    d, _ = spread(FlowConfig(distortion_prob=0.5, distortion_std=0.4))
    moved = d.view(400, 9, 3).abs().amax((1, 2)) > 0
    assert 0.4 < moved.double().mean() < 0.6  # about half of the molecules distorted, the rest untouched
    torch.testing.assert_close(d.view(400, 9, 3)[moved].std(), torch.tensor(0.4 * (8 / 9) ** 0.5, dtype=DTYPE),
                               rtol=0.05, atol=0)


@pytest.mark.parametrize("bad", [{"time_distribution": "lognormal"}, {"time_beta": (0.0, 1.0)},
                                 {"position_noise": float("nan")}, {"distortion_prob": 1.5},
                                 {"distortion_std": -0.1}])
def test_recipe_knobs_reject_meaningless_values(bad):
    with pytest.raises(ValueError, match="flow\\."):
        FlowConfig(**bad)


def test_time_grid_is_uniform_at_power_one_and_finer_near_the_data_above():
    from molgen.flow import time_grid

    torch.testing.assert_close(time_grid(10), torch.linspace(0, 1, 11))
    grid = time_grid(10, 2.0)
    assert grid[0] == 0 and grid[-1] == 1 and (grid.diff() > 0).all()
    assert grid.diff()[-1] < grid.diff()[0] / 10  # last step 19x finer than the first
    for bad in ({"time_power": 0.0}, {"eta": float("nan")}, {"temperature": float("inf")}, {"steps": 0},
                {"steps": 2.5}):
        with pytest.raises(ValueError, match="sampler"):
            SamplerConfig(**bad)

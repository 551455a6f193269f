"""scoregen's domain-free score-based core: tensors only (torch, numpy, scipy).

Never imports RDKit, pymatgen, ASE, networkx or a domain package. The public surface is re-exported here;
implementation lives in small modules (``sde``, ``system``, ``samplers``, ``edm``, ``flow``, ``discrete_flow``,
``joint_flow``, ``losses``, ``guidance``, ``training``, ``config``, ``hooks``, ``evaluation``).
"""

from .config import ConfigError, config_to_dict, load_config, save_config
from .discrete_flow import MaskingDiscreteFlow, UniformDiscreteFlow, discrete_flow_loss, tempered_probs
from .edm import DenoiserScore, EDMLoss, EDMPrecond, edm_sampler, edm_sigma_steps, score_from_denoiser
from .evaluation import EvaluationReport, Evaluator, MissingDependency, evaluator, run_evaluators
from .flow import CosineInterpolant, Interpolant, LinearInterpolant
from .joint_flow import ContinuousField, DiscreteField, JointFlow, JointSampler
from .guidance import ClassifierFreeGuidance, GradientGuidance, drop_condition
from .hooks import Hook, HookResult, content_hash, run_hook
from .losses import dsm_loss, system_dsm_loss
from .registry import Registry, UnknownName
from .samplers import SampleResult, ode_sample, pc_sample, s4_sample
from .sde import SDE, VESDE, VPSDE, SubVPSDE, expand_like
from .seeding import make_generator, seed_everything
from .system import Component, SDESystem, sym_randn, sym_randn_like
from .training import EMA, Trainer, TrainerConfig

__version__ = "0.1.0"

__all__ = [
    "SDE", "VPSDE", "SubVPSDE", "VESDE", "expand_like",
    "Component", "SDESystem", "sym_randn", "sym_randn_like",
    "SampleResult", "pc_sample", "s4_sample", "ode_sample",
    "EDMPrecond", "EDMLoss", "edm_sampler", "edm_sigma_steps", "score_from_denoiser", "DenoiserScore",
    "Interpolant", "LinearInterpolant", "CosineInterpolant",
    "JointFlow", "ContinuousField", "DiscreteField", "JointSampler",
    "MaskingDiscreteFlow", "UniformDiscreteFlow", "discrete_flow_loss", "tempered_probs",
    "dsm_loss", "system_dsm_loss",
    "ClassifierFreeGuidance", "GradientGuidance", "drop_condition",
    "Trainer", "TrainerConfig", "EMA",
    "ConfigError", "load_config", "save_config", "config_to_dict",
    "seed_everything", "make_generator",
    "Evaluator", "EvaluationReport", "MissingDependency", "evaluator", "run_evaluators",
    "Hook", "HookResult", "content_hash", "run_hook",
    "Registry", "UnknownName",
]

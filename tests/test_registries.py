"""The domains' registries: what the commands offer is what is registered."""


def test_domain_registries_feed_their_commands():
    from crysgen.hooks import CALCULATORS, ASECalculatorHook
    from molgen.hooks import QM_HOOKS, PySCFHook, XTBHook

    assert dict(QM_HOOKS) == {"xtb": XTBHook, "b3lyp": PySCFHook}
    assert list(CALCULATORS) == ["chgnet", "emt"]
    emt = CALCULATORS["emt"](fmax=0.2, steps=3)
    assert isinstance(emt, ASECalculatorHook) and emt.fmax == 0.2 and emt.steps == 3
    from graphgen.sampling import SAMPLERS

    assert {"pc", "s4"} <= set(SAMPLERS)

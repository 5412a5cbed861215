"""FlexCode's named variants (SPEC §1 ablations) as presets over a split policy and the alignment.

``variant`` is a name for a combination, resolved once when the configuration is read:

=================  ==========================  =========
variant            budget split                alignment
=================  ==========================  =========
``full``           router (``router_mode``)    yes
``no_align``       router (``router_mode``)    no
``fix``            ``fixed_cf_tokens`` CF      yes
``cf_only``        ``L`` CF tokens             no
``semantic_only``  0 CF tokens (TIGER-style)   no
=================  ==========================  =========

Combinations that cannot mean anything are refused here, before any stage runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from recbole_flexcode.config import ConfigError

VARIANTS = ("full", "semantic_only", "cf_only", "fix", "no_align")


@dataclass(frozen=True)
class Variant:
    name: str
    aligned: bool  # InfoNCE alignment of the two codebooks (§4.2)
    fixed_split: int | None  # collaborative tokens of every item; None: the router chooses (§4.3)

    @property
    def routed(self) -> bool:
        return self.fixed_split is None


def flexcode_variant(config) -> Variant:
    """The variant ``config`` asks for, checked against the other settings it depends on."""
    name, budget = config["variant"], int(config["token_budget"])
    if name in ("full", "no_align"):
        variant = Variant(name, name == "full", None)
    elif name == "semantic_only":
        variant = Variant(name, False, 0)
    elif name == "cf_only":
        variant = Variant(name, False, budget)
    elif name == "fix":
        # ~ means half the budget, the odd token to the collaborative side
        split = config["fixed_cf_tokens"]
        variant = Variant(name, True, math.ceil(budget / 2) if split is None else int(split))
    else:
        raise ConfigError(f"variant: unknown value '{name}' (choose from {', '.join(VARIANTS)})")
    if variant.fixed_split is not None and not 0 <= variant.fixed_split <= budget:
        raise ConfigError(f"fixed_cf_tokens: {variant.fixed_split} is outside 0..token_budget ({budget})")
    if config["tokenizer"] == "rkmeans":
        if variant.aligned and float(config["align_weight"]) > 0:
            raise ConfigError(f"tokenizer: rkmeans trains no alignment, but variant {name} aligns the codebooks "
                              "(use tokenizer=rqvae, align_weight=0, or variant no_align / cf_only / semantic_only)")
        if config["training_mode"] == "joint":
            raise ConfigError("training_mode: joint trains the tokenizer with the generator; rkmeans has nothing to train "
                              "(use training_mode=staged or tokenizer=rqvae)")
    return variant

"""Reports and diagnostics of the plugin's models, kept out of the model classes.

The run (:mod:`recbole_flexcode.quick_start`) and the ``diagnose`` CLI call these three entry
points; each returns None for a model it has nothing to say about (RecBole's own models).
"""

from __future__ import annotations


def model_report(model) -> dict | None:
    """What the run's JSON records about the model itself (tokenizer, allocation, variant)."""
    name = type(model).__name__
    if name == "FlexCode":
        from recbole_flexcode.analysis.flexcode import report

        return report(model)
    if name == "SOLID":
        from recbole_flexcode.analysis.solid import report

        return report(model)
    return None


def validation_diagnostics(model, valid_data) -> dict | None:
    """Diagnostics on validation rows (FlexCode: split losses per popularity stratum)."""
    if type(model).__name__ == "FlexCode":
        from recbole_flexcode.analysis.flexcode import split_losses

        return split_losses(model, valid_data)
    return None


def export_artifacts(model, directory: str) -> list[str] | None:
    """Files written next to the run's JSON (FlexCode: per-item splits and their plot)."""
    if type(model).__name__ == "FlexCode":
        from recbole_flexcode.analysis.flexcode import export_artifacts as export

        return export(model, directory)
    return None

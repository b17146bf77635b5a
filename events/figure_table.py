"""The README's table of event types and figures (``figure_table``), generated from the catalogue's
declarations; ``tests/test_catalogue.py`` checks that README.md carries it as generated.
"""

from __future__ import annotations

import dataclasses

from events.catalogue import CATALOGUE, LIFECYCLES, creator_of


def figure_table() -> str:
    """The README's table of event types and figures, generated from the catalogue."""
    lines = [
        "| event type | subject (after ward) | what it records | figures (flows count in the year of `occurred_on`; stocks in every year they stand) |",
        "|---|---|---|---|",
    ]
    for spec in CATALOGUE:
        entity = spec.entity
        end = ".end" if entity is not None and entity.role == "ends" else ""
        subject = f"`{entity.name}.<{entity.field}>{end}` ({entity.role})" if entity else f"`{spec.subject}`"
        figures: list[str] = [f"`{name}`" for name in spec.counts]
        if spec.counts_by is not None:
            field_name, values = spec.counts_by
            figures = [f"{text}, and `.<{field_name}>` (the tip's): {', '.join(values)}" for text in figures]
        for fig in spec.figures:
            text = f"`{fig.metric}`"
            if fig.amount:
                text += f" += `{fig.amount}`"
            if fig.each:
                text += f" per item of `{fig.each}`"
            if fig.when:
                text += f" when `{fig.when[0]}` = `{fig.when[1]}`"
            if fig.unless:
                text += f" unless `{fig.unless[0]}` = `{fig.unless[1]}`"
            if fig.aside:
                text += f" (`{fig.aside[0]}` = `{fig.aside[1]}`: only in `.{fig.aside[1]}`)"
            if fig.stock:
                text += " — **stock**: what stands at each year's end"
            if fig.final:
                text += " — on the latest assessment, counted once"
            for by in fig.by_fields:
                one = dataclasses.replace(fig, by=by)
                text += f", and `.<{by}>`: " + ", ".join(one.breakdowns(spec.owner))
            figures.append(text)
        if spec.links is not None and spec.fold == "plain":
            figures = [f for f in figures if f not in (f"`{n}`" for n in spec.counts)]
            figures += [
                f"`{name}`: each distinct tip of `{spec.links.field}` that stands, once however many cases name it, "
                "in the tip's ward and year of receipt"
                for name in spec.counts
            ]
        if spec.fold == "lifecycle" and entity is not None and entity.role == "refers":
            life = LIFECYCLES[spec.struct]
            sets = [
                n
                for n in life.fields
                if n in spec.struct.__struct_fields__ and n != life.counted_in and n not in entity.same
            ]
            change = " (stocks change)" if any(f.stock for f in creator_of(entity.name).figures) else ""
            named = ", ".join(f"`{n}`" for n in sets)
            figures.append(f"sets {named} of its {entity.name} from its day on{change}")
        if spec.fold == "lifecycle" and entity is not None and entity.role == "ends":
            figures.append(f"ends the stocks of its {entity.name} from its day on")
        if spec.fold == "retraction":
            figures.append("removes its target's contribution (a corrected version stands again)")
        if spec.fold == "correction":
            figures.append("replaces its target's contribution with the corrected copy's (in its year)")
        if entity is not None and entity.counted_in and figures:
            figures.append(f"all counted in the year `{entity.counted_in}` names (both kinds of year)")
        lines.append(f"| `{spec.tag}` | {subject} | {spec.summary} | {'; '.join(figures) or '—'} |")
    return "\n".join(lines) + "\n"

"""Static checks of a recipe's parameters against its merge method (no checkpoint needed).

Checks names (with did-you-mean), where each parameter may be set (per-model parameters
anywhere, shared ones only at the top level or on a slice), every scalar's type and range
(each entry of a gradient and each filter rule's value), empty gradients, required
parameters, the method's model counts and base, and duplicate models.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Annotated, Any, get_args

from pydantic import TypeAdapter, ValidationError

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.methods import REGISTRY, get_method
from mergesmith.methods.base import MethodSpec, ParamInfo
from mergesmith.methods.known_params import known_parameter_names
from mergesmith.recipe.model import FilterRule, Params, Recipe
from mergesmith.recipe.yamlloc import Loc, YamlDoc


@cache
def scalar_adapter(spec: MethodSpec, info: ParamInfo) -> TypeAdapter:
    """A validator for one value of a parameter (one model's value for per-model ones)."""
    finfo = spec.params.model_fields[info.field_name]
    if info.per_model:
        item = get_args(finfo.annotation)[0]
    elif finfo.metadata:
        item = Annotated[(finfo.annotation, *finfo.metadata)]
    else:
        item = finfo.annotation
    return TypeAdapter(item)


def _scalars(setting: Any, loc: Loc) -> list[tuple[Any, Loc]]:
    """Every scalar value in a setting, with its location."""
    if isinstance(setting, FilterRule):
        return _scalars(setting.value, (*loc, "value"))
    if isinstance(setting, list):
        out: list[tuple[Any, Loc]] = []
        for i, item in enumerate(setting):
            if isinstance(item, FilterRule):
                out.extend(_scalars(item.value, (*loc, i, "value")))
            else:
                out.append((item, (*loc, i)))
        return out
    return [(setting, loc)]


def _check_scope(spec: MethodSpec, params: Params | None, loc: Loc, doc: YamlDoc, per_model_only: bool,
                 notes: list[str], what: str, opted_in: set[str] = frozenset()) -> list[str]:
    """Problems of one `parameters:` mapping; parameters the method ignores go to `notes`
    (one line each: where, which parameter, which method, for `what`: a model, a slice...)."""
    problems: list[str] = []
    for name, setting in (params or {}).items():
        where = doc.where((*loc, name))
        info = spec.param(name)
        if info is None:
            if name in known_parameter_names():
                notes.append(f"{where}: {spec.name} does not use parameter \"{name}\" ({what}); ignored, "
                             "as mergekit ignores it")
                continue
            known = [p.name for p in spec.param_infos]
            listed = ", ".join(known) or "none"
            problems.append(f"{where}: unknown parameter \"{name}\" for {spec.name}"
                            f"{did_you_mean(name, known) or did_you_mean(name, sorted(known_parameter_names()))}; "
                            f"{spec.name} takes: {listed}")
            continue
        if per_model_only and not info.per_model:
            notes.append(f"{where}: \"{name}\" is one value for all models of {spec.name}, so per model "
                         f"({what}) it is ignored, as mergekit ignores it; set it in the top-level or slice "
                         "`parameters:`")
            continue
        flag = dict(spec.opt_in).get(name)
        if flag is not None and flag not in opted_in:
            notes.append(f"{where}: {spec.name} ignores parameter \"{name}\" ({what}), as mergekit does; "
                         f"set `{flag}: true` in `parameters:` to use it")
        problems.extend(_check_values(spec, info, setting, (*loc, name), doc))
    return problems


def _check_values(spec: MethodSpec, info: ParamInfo, setting: Any, loc: Loc, doc: YamlDoc) -> list[str]:
    problems = []
    if isinstance(setting, list) and not setting:
        return [f"{doc.where(loc)}: \"{info.name}\" is an empty list; give a value or a gradient "
                "of at least one value"]
    if isinstance(setting, list):
        for i, item in enumerate(setting):
            if isinstance(item, FilterRule) and isinstance(item.value, list) and not item.value:
                problems.append(f"{doc.where((*loc, i))}: filter rule has an empty value list")
    adapter = scalar_adapter(spec, info)
    for value, vloc in _scalars(setting, loc):
        if value is None and not info.required:
            continue
        try:
            checked = adapter.validate_python(value)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            problems.append(f"{doc.where(vloc)}: \"{info.name}\" = {value!r}: {msg}")
            continue
        problem = _value_problem(info.name, value, checked, vloc != loc and not _in_rule(setting))
        if problem:
            problems.append(f"{doc.where(vloc)}: {problem}")
            break  # one mistake, one line: the rest of this setting is the same kind
    return problems


def _in_rule(setting: Any) -> bool:
    return isinstance(setting, FilterRule) or (isinstance(setting, list) and any(isinstance(s, FilterRule) for s in setting))


def _value_problem(name: str, value: Any, checked: Any, in_gradient: bool) -> str | None:
    """What pydantic lets through but a merge cannot use: true/false as a number, a gradient
    of true/false, NaN or infinity (found now, not after tensors were read)."""
    if isinstance(value, bool) and not isinstance(checked, bool):
        return f"\"{name}\" = {str(value).lower()}: a number is needed, not true/false"
    if isinstance(checked, bool) and in_gradient:
        return f"\"{name}\" is true or false, not a gradient: give one value"
    if isinstance(checked, float) and not math.isfinite(checked):
        return f"\"{name}\" = {value!r}: must be a finite number (not NaN or infinity)"
    return None


Group = tuple[Loc, list[tuple[str, "Params | None", Loc]], "str | None", list["Params | None"]]


def _inputs_of(recipe: Recipe) -> list[Group]:
    """(location, [(model, params, loc)], base, shared scopes) for every group of inputs merged
    together: the `models:` list, each slice, and those of every module of `modules:`."""
    return _groups_of(recipe.models, recipe.slices, recipe.base_model, (), [recipe.parameters])


def _groups_of(models: list | None, slices: list | None, base: str | None, loc: Loc,
               scopes: list[Params | None]) -> list[Group]:
    groups: list[Group] = []
    if models:
        entries = [(m.model, m.parameters, (*loc, "models", i)) for i, m in enumerate(models)]
        groups.append(((*loc, "models"), entries, base, scopes))
    for s, slc in enumerate(slices or []):
        entries = [(src.model, src.parameters, (*loc, "slices", s, "sources", i))
                   for i, src in enumerate(slc.sources)]
        groups.append(((*loc, "slices", s), entries, slc.base_model or base, [slc.parameters, *scopes]))
    return groups


def _module_groups(recipe: Recipe) -> list[Group]:
    groups: list[Group] = []
    for name, module in (recipe.modules or {}).items():
        groups += _groups_of(module.models, module.slices, recipe.base_model, ("modules", name),
                             [module.parameters, recipe.parameters])
    return groups


def _group_problems(spec: MethodSpec, recipe: Recipe, doc: YamlDoc) -> list[str]:
    problems = []
    for loc, entries, base, _ in _inputs_of(recipe) + _module_groups(recipe):
        where = doc.where(loc)
        names = [m for m, _, _ in entries]
        dupes = sorted({m for m in names if names.count(m) > 1})
        for model in dupes:
            problems.append(f"{where}: model \"{model}\" is listed {names.count(model)} times in one "
                            "merge; list it once (combine its weights into one entry)")
        if spec.base == "required" and not base:
            problems.append(f"{where}: {spec.name} needs a base_model; add `base_model:`")
        if loc[-1] == "models" and base and base not in names:
            names = [*names, base]  # mergekit merges the base too when it is not listed
        non_base = [m for m in names if not (spec.uses_base and m == base)]
        if loc[-1] != "models" and spec.uses_base and base and base not in names:
            problems.append(f"{where}: {spec.name} needs the base model \"{base}\" among the slice's "
                            "sources; add a source with that model and a layer_range")
        count = len(non_base)
        if count < spec.min_models or (spec.max_models is not None and count > spec.max_models):
            problems.append(f"{where}: {spec.name} takes {_count_text(spec)} but this recipe gives "
                            f"{count}: {', '.join(non_base) or 'none'}")
    return problems


def _count_text(spec: MethodSpec) -> str:
    what = "models besides the base" if spec.uses_base else "input models"
    if spec.max_models == spec.min_models:
        return f"exactly {spec.min_models} {what}"
    if spec.max_models is None:
        return f"at least {spec.min_models} {what}"
    return f"{spec.min_models} to {spec.max_models} {what}"


def _required_problems(spec: MethodSpec, recipe: Recipe, doc: YamlDoc) -> list[str]:
    problems = []
    for loc, entries, base, shared_scopes in _inputs_of(recipe) + _module_groups(recipe):
        if loc[-1] == "models" and base and base not in [m for m, _, _ in entries]:
            entries = [*entries, (base, None, ("base_model",))]
        for info in spec.param_infos:
            if not info.required:
                continue
            if not info.per_model:
                if not any(s and info.name in s for s in shared_scopes):
                    problems.append(f"{doc.where(loc)}: {spec.name} needs parameter \"{info.name}\" "
                                    "(set it under top-level `parameters:`)")
                continue
            for model, params, mloc in entries:
                if spec.uses_base and model == base:
                    continue
                if not any(s and info.name in s for s in [params, *shared_scopes]):
                    problems.append(f"{doc.where(mloc)}: model \"{model}\" has no \"{info.name}\", "
                                    f"which {spec.name} needs for every model; add "
                                    f"`parameters: {{{info.name}: ...}}` to it")
    return problems


def _opted_in(spec: MethodSpec, recipe: Recipe) -> set[str]:
    """The opt-in flags of `spec` (e.g. karcher's `weighted`) the recipe sets to anything but false."""
    modules = list((recipe.modules or {}).values())
    scopes = [recipe.parameters, *(slc.parameters for slc in recipe.slices or []),
              *(m.parameters for m in modules), *(slc.parameters for m in modules for slc in m.slices or [])]
    return {flag for _, flag in spec.opt_in
            if any(s and flag in s and s[flag] is not False for s in scopes)}


def _slice_problems(spec: MethodSpec, slc: Any, loc: Loc, doc: YamlDoc, notes: list[str], what: str,
                    on: set[str]) -> list[str]:
    problems = _check_scope(spec, slc.parameters, (*loc, "parameters"), doc, False, notes, what, on)
    for i, src in enumerate(slc.sources):
        problems += _check_scope(spec, src.parameters, (*loc, "sources", i, "parameters"), doc, True,
                                 notes, f"{what} model {src.model}", on)
    lengths = {src.layer_range[1] - src.layer_range[0] for src in slc.sources}
    if len(lengths) > 1:
        ranges = ", ".join(f"{src.model} {list(src.layer_range)}" for src in slc.sources)
        problems.append(f"{doc.where(loc)}: the sources of a slice must have the same "
                        f"number of layers; got {ranges}")
    return problems


def parameter_problems(recipe: Recipe, doc: YamlDoc, *, check_required: bool = True,
                       notes: list[str] | None = None) -> list[str]:
    """Every parameter and input problem of a structurally valid recipe (`check_required`
    False when a faulty setting was already reported and dropped: it is not missing);
    parameters the method ignores are appended to `notes`, one warning line each."""
    notes = [] if notes is None else notes
    if recipe.merge_method not in REGISTRY:
        try:
            get_method(recipe.merge_method)
        except RecipeError as exc:
            return [f"{doc.where(('merge_method',))}: {exc.message}; run `mergesmith methods`"]
    spec = get_method(recipe.merge_method)
    on = _opted_in(spec, recipe)
    problems = _check_scope(spec, recipe.parameters, ("parameters",), doc, False, notes,
                            "top-level parameters", on)
    for i, entry in enumerate(recipe.models or []):
        problems += _check_scope(spec, entry.parameters, ("models", i, "parameters"), doc, True, notes,
                                 f"model {entry.model}", on)
    for s, slc in enumerate(recipe.slices or []):
        problems += _slice_problems(spec, slc, ("slices", s), doc, notes, f"slices[{s}]", on)
    for name, module in (recipe.modules or {}).items():
        mloc: Loc = ("modules", name)
        problems += _check_scope(spec, module.parameters, (*mloc, "parameters"), doc, False, notes,
                                 f"module {name}", on)
        for i, entry in enumerate(module.models or []):
            problems += _check_scope(spec, entry.parameters, (*mloc, "models", i, "parameters"), doc, True, notes,
                                     f"module {name} model {entry.model}", on)
        for s, slc in enumerate(module.slices or []):
            problems += _slice_problems(spec, slc, (*mloc, "slices", s), doc, notes, f"module {name} slices[{s}]", on)
    problems += _group_problems(spec, recipe, doc)
    if not problems and check_required:
        problems += _required_problems(spec, recipe, doc)
    return problems

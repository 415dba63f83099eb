"""Recipes: the YAML that drives every stage, as typed dataclasses. This package owns the recipe
keys (their types, defaults and help texts), reading a recipe file or a bundled name with dotted
`--set` overrides and typed flag values, every check on the values (all problems reported at
once, in one RecipeError), and writing a recipe back as YAML. Recipes are data: nothing in a
recipe can name code to run (`yaml.safe_load`, closed enums, no imports).

    schema.py   one dataclass per stage (data, tokenizer, model, optim, train, mlm, decode) with
                defaults and help texts; closed choices are enums. The model section's
                architecture fields are tfcli.model.config.Architecture's (shared with ModelSpec)
    parse.py    the one typed parser: plain data -> dataclasses, every problem collected (also
                reads the model spec stored in checkpoints); `knob`, a field with a help text
    checks.py   the cross-field rules types cannot express (the model's come from Architecture)
    loader.py   files, bundled recipes, overrides and flag values -> Recipe (`load`, `from_dict`);
                back to plain data / YAML; the field table behind the docs
    docgen.py   the README's recipe reference, generated from the schema
"""

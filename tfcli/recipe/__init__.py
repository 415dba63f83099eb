"""Recipes: the YAML that drives every stage, as typed dataclasses.

    schema.py   one dataclass per stage (data, tokenizer, model, optim, train, mlm, decode) with
                defaults and help texts; closed choices are enums
    loader.py   YAML (safe_load only) or a bundled name -> Recipe: dotted overrides, type and
                cross-field checks, every problem reported at once; back to plain data / YAML
    docgen.py   the README's recipe reference, generated from the schema

Recipes are data: nothing in a recipe can name code to run.
"""

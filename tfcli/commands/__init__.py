"""One thin module per command: parse options, load the recipe, call the library, render."""

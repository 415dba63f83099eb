"""Tests of tfcli.tokenizer, one file per module."""

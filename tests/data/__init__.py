"""Tests of tfcli.data, one file per module."""

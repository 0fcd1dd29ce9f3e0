"""Thin Nipype interfaces: each moves files in and out of one plain function."""

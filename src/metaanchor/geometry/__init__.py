"""Anchor geometry, family-agnostic: anchor SPECs and grids, box coding, matching, anchor fitting."""
